"""One completion's lifecycle and its one owner: slot, control, record, the upstream's start.

`Completion.begin` takes the concurrency slot and registers the request with the conversation
registry; `start()` begins the response model's work at once (connecting and sending overlap with
our own response setup, instead of waiting for the first read of the response body); `finish()`
releases everything exactly once, however the request ends — a stream that ran to its end, a
client that left before the stream was first read (an unstarted async generator never runs its
own cleanup), or an error while preparing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.requests import Request

from server.chunks import ChunkEncoder
from server.control import RequestControl
from server.observability import CONVERSATION_ID, log_safe
from server.preparation import Prepared, prepare
from server.request_log import CompletionRecord
from server.responders import CompletionJob, ResponseEvent
from server.services import Services
from server.streaming import word_events

logger = logging.getLogger(__name__)
CONFIG_CHECK_ID = "tavus-openai-compat-test"  # observed from a public integration's live call
CONFIG_CHECK_REPLY = "Custom LLM configuration test successful."


async def _replay(events: list[ResponseEvent]) -> AsyncIterator[ResponseEvent]:
    for event in events:
        yield event


@dataclass
class Completion:
    services: Services
    control: RequestControl
    job: CompletionJob
    encoder: ChunkEncoder
    record: CompletionRecord
    _first: asyncio.Task[ResponseEvent] | None = field(default=None, repr=False)
    _done: bool = field(default=False, repr=False)

    @classmethod
    async def begin(cls, services: Services, request: Request) -> tuple[Completion, Prepared]:
        """Take the slot (429 past the cap), prepare the request (off the loop when large) and
        register it; if preparing fails, the slot is released before the error propagates."""
        services.gate.enter()
        try:
            prepared = await prepare(await request.body(), request, services)
        except BaseException:
            services.gate.leave()
            raise
        control = services.conversations.start(request.headers)
        job = CompletionJob(
            request=prepared.completion_request,
            body=prepared.body,
            conversation=prepared.conversation,
            prompt_messages=prepared.rendered.messages,
            control=control,
        )
        encoder = ChunkEncoder(model=services.responder.model_for(job))
        CONVERSATION_ID.set(log_safe(control.conversation_id))
        record = CompletionRecord(
            request_id=request.state.request_id,
            conversation_id=control.conversation_id,
            model=encoder.model,
            template=prepared.rendered.template,
            stream=prepared.completion_request.stream,
            prompt_tokens=prepared.rendered.prompt_tokens,
        )
        return cls(services, control, job, encoder, record), prepared

    @property
    def is_config_check(self) -> bool:
        """Tavus validating a persona's LLM settings: it sends this conversation id."""
        return (
            self.control.conversation_id == CONFIG_CHECK_ID
            and self.services.settings.answer_config_check
        )

    def start(self) -> AsyncIterator[ResponseEvent]:
        """The reply's events, the first of them already being fetched."""
        if self.is_config_check:
            # Answered here, at once and for free: the upstream is not asked (an unreachable or
            # slow model would fail the check; a real one would bill it).
            logger.info("answered Tavus' configuration check without calling the model")
            self.record.template = "config-check"
            return _replay(word_events(CONFIG_CHECK_REPLY))
        events = self.services.responder.stream(self.job)
        self._first = asyncio.ensure_future(anext(events))
        return self._chained(self._first, events)

    @staticmethod
    async def _chained(
        first: asyncio.Task[ResponseEvent], events: AsyncIterator[ResponseEvent]
    ) -> AsyncIterator[ResponseEvent]:
        try:
            try:
                yield await first
            except StopAsyncIteration:
                return
            async for event in events:
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    def finish(self) -> None:
        """Release the slot and the control, log the record: once, whoever calls it first."""
        if self._done:
            return
        self._done = True
        if self._first is not None and not self._first.done():
            self._first.cancel()  # nobody will read it: stop the upstream request now
        self.services.gate.leave()
        self.services.conversations.finish(self.control)
        self.record.finish(self.services.metrics)
