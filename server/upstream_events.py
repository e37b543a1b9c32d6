"""Reading an upstream's streamed body into `ResponseEvent`s under the request's deadlines."""

from __future__ import annotations

import asyncio
from collections import deque

import aiohttp

from server.control import RequestControl
from server.errors import UpstreamError
from server.responders import ResponseEvent
from server.sse_decoder import DONE, OversizedEventError, SSEDecoder, SSEEvent
from server.upstream_chunks import chunk_events


class UpstreamEvents:
    """The upstream's events, read under the request's deadlines without holding the loop.

    aiohttp hands back data that is already buffered without suspending, so a fast upstream could
    keep this task running forever: a cancellation (the client left) or a deadline would never
    land. Every network read is therefore followed by `asyncio.sleep(0)`, and deadlines are
    checked explicitly between reads; comments and blank lines never count as progress.
    """

    def __init__(self, response: aiohttp.ClientResponse, control: RequestControl) -> None:
        self.response = response
        self.control = control
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
                if events:
                    return events
            if self.eof:
                return None
            await self._read(deadline)
        return None
