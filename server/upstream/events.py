"""Reading an upstream's streamed body into `ResponseEvent`s under the request's deadlines."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import aiohttp

from server.completion.control import RequestControl
from server.errors import UpstreamError
from server.redaction import Redactor
from server.responders.base import ResponseEvent
from server.upstream.chunks import chunk_events
from server.wire.sse_decoder import DONE, OversizedEventError, SSEDecoder, SSEEvent


def _redacted(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item, redactor) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, redactor) for item in value]
    return value


def _redacted_event(event: ResponseEvent, redactor: Redactor) -> ResponseEvent:
    """Every value of a chunk (text, refusal, tool calls, finish_reason) comes from the upstream:
    a reply that echoed our key had it relayed as is (review of issue 23). Values are redacted,
    never the raw JSON (a configured header value may be any word, even a field name); the raw
    chunk is only scanned, once, to see whether there is anything to do. A key split across
    two chunks is not caught: each chunk is relayed as read."""
    return ResponseEvent(
        delta=_redacted(event.delta, redactor),
        finish_reason=_redacted(event.finish_reason, redactor),
        usage=event.usage,
    )


class UpstreamEvents:
    """The upstream's events, read under the request's deadlines without holding the loop.

    aiohttp hands back data that is already buffered without suspending, so a fast upstream could
    keep this task running forever: a cancellation (the client left) or a deadline would never
    land. Every network read is therefore followed by `asyncio.sleep(0)`, and deadlines are
    checked explicitly between reads; comments and blank lines never count as progress.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        control: RequestControl,
        redactor: Redactor | None = None,
    ) -> None:
        self.response = response
        self.control = control
        self.redactor = redactor
        self.decoder = SSEDecoder()
        self.pending: deque[SSEEvent] = deque()
        self.done = False  # `[DONE]` seen
        self.eof = False  # the body ended

    async def _read(self, deadline: float) -> None:
        if asyncio.get_running_loop().time() >= deadline:
            raise TimeoutError
        data = await self.control.wait(self.response.content.readany(), deadline)
        try:
            if data:
                self.pending.extend(self.decoder.feed(data))
            else:
                self.eof = True
                self.pending.extend(self.decoder.flush())
        except OversizedEventError as error:
            raise UpstreamError(f"upstream sent an oversized event ({error})") from None
        await asyncio.sleep(0)

    async def next_events(self, deadline: float) -> list[ResponseEvent] | None:
        """The next non-empty batch of events; None at `[DONE]` or the end of the body."""
        while not self.done:
            while self.pending:
                payload = self.pending.popleft().data
                if payload == DONE:
                    self.done = True
                    return None
                events = chunk_events(payload)
                if self.redactor is not None and self.redactor.redact(payload) != payload:
                    events = [_redacted_event(event, self.redactor) for event in events]
                if events:
                    return events
            if self.eof:
                return None
            await self._read(deadline)
        return None
