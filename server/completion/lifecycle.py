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
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.requests import Request

from server.capture.privacy import kept_headers
from server.capture.rows import CallSnapshot
from server.completion.control import RequestControl, conversation_id_of
from server.completion.emotion_tags import EmotionPolicy, with_emotion_tag
from server.completion.preparation import Prepared, TemplateChoice, prepare_off_loop
from server.completion.prompting import PROMPT_HEADER
from server.completion.record import CompletionRecord
from server.completion.sharing import Key, SharedGeneration, as_twin
from server.completion.streaming import word_events
from server.http.observability import CONVERSATION_ID, log_safe
from server.responders.base import CompletionJob, Responder, ResponseEvent, close_events
from server.services import Services
from server.wire.chunks import ChunkEncoder

logger = logging.getLogger(__name__)
CONFIG_CHECK_ID = "tavus-openai-compat-test"  # observed from a public integration's live call
CONFIG_CHECK_REPLY = "Custom LLM configuration test successful."


async def _replay(events: list[ResponseEvent]) -> AsyncIterator[ResponseEvent]:
    for event in events:
        yield event


@dataclass(frozen=True)
class CaptureContext:
    """What the capture needs from the request, kept only while calls are recorded."""

    headers: dict[str, str]
    prepared: Prepared
    started_at: float = field(default_factory=time.time)

    def snapshot(self, record: CompletionRecord) -> CallSnapshot:
        rendered = self.prepared.rendered
        return CallSnapshot(
            request_id=record.request_id,
            conversation_id=record.conversation_id,
            started_at=self.started_at,
            template=record.template,
            model=record.model,
            stream=record.stream,
            outcome=str(record.outcome),
            ttft_ms=record.ttft_ms,
            total_ms=record.total_ms or 0.0,
            prompt_tokens=record.prompt_tokens,
            shared=record.shared,
            emotion_repaired=record.emotion_repaired,
            error=record.error,
            headers=self.headers,
            body=self.prepared.body,
            conversation=self.prepared.conversation,
            prompt_messages=rendered.messages,
            dropped_turns=rendered.dropped_turns,
            perception_collapsed=rendered.perception_collapsed,
            reply_text="".join(record.reply_parts),
            tool_calls=[record.tool_calls[i] for i in sorted(record.tool_calls)],
            finish_reason=record.finish_reason,
        )


@dataclass
class Completion:
    services: Services
    control: RequestControl
    job: CompletionJob
    encoder: ChunkEncoder
    record: CompletionRecord
    responder: Responder
    shared: SharedGeneration | None = None  # this request leads it: twins may join
    twin_of: SharedGeneration | None = None  # this request is a twin: it reads that one
    _share_key: Key | None = field(default=None, repr=False)
    _captured: CaptureContext | None = field(default=None, repr=False)
    _first: asyncio.Task[ResponseEvent] | None = field(default=None, repr=False)
    _done: bool = field(default=False, repr=False)

    @classmethod
    async def begin(cls, services: Services, request: Request) -> tuple[Completion, Prepared]:
        """Read the body, take the slot (429 past the cap), prepare the request (off the loop
        when large) and register it; if preparing fails, the slot is released before the error
        propagates."""
        # The body is read before the slot is taken: 260 connections sending a byte a second
        # held every slot for 30 s (issue 23); reading costs no slot, and the connection guard
        # evicts or times out a slow body.
        raw = await request.body()
        services.gate.enter()
        try:
            prepared = await prepare_off_loop(
                raw, TemplateChoice.from_http(request.headers, request.query_params), services
            )
        except BaseException:
            services.gate.leave()
            raise
        key = None
        if services.settings.share_identical_requests:
            key = services.shared.key(
                conversation_id_of(request.headers),
                raw,
                request.scope["query_string"].decode("latin-1"),
                request.headers.get(PROMPT_HEADER, ""),
            )
        twin_of = services.shared.twin_of(key)
        control = services.conversations.start(request.headers, twin=twin_of is not None)
        if twin_of is not None:
            twin_of.join(control)  # its place is kept from now: nothing it will read is dropped
        job = CompletionJob(
            request=prepared.completion_request,
            body=prepared.body,
            conversation=prepared.conversation,
            prompt_messages=prepared.rendered.messages,
            control=control,
        )
        responder = services.responder.pick(job)  # once: the model name and the stream agree
        encoder = ChunkEncoder(model=responder.model_for(job))
        CONVERSATION_ID.set(log_safe(control.conversation_id))
        record = CompletionRecord(
            request_id=request.state.request_id,
            conversation_id=control.conversation_id,
            model=encoder.model,
            template=prepared.rendered.template,
            stream=prepared.completion_request.stream,
            prompt_tokens=prepared.rendered.prompt_tokens,
        )
        completion = cls(services, control, job, encoder, record, responder, twin_of=twin_of)
        completion._share_key = key
        if services.capture is not None:
            record.capturing = True
            completion._captured = CaptureContext(kept_headers(request.headers), prepared)
        return completion, prepared

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
        if self.twin_of is not None:
            return as_twin(self.twin_of, self.control, self.record)
        events = self.responder.stream(self.job)
        if self._share_key is not None:  # read by a task of its own, so twins can join
            self.shared = self.services.shared.begin(self._share_key, events)
            return self.shared.read(self.control)
        self._first = asyncio.ensure_future(anext(events))
        return self._chained(self._first, events)

    def with_emotion_tag(
        self, events: AsyncIterator[ResponseEvent]
    ) -> AsyncIterator[ResponseEvent]:
        """`events`, guaranteed to begin with an emotion tag when the request carries Tavus'
        Phoenix-4 rule (and the setting is on); otherwise `events` themselves."""
        rule = self.job.conversation.emotion_rule
        settings = self.services.settings
        if rule is None or not settings.emotion_tags:
            return events
        policy = EmotionPolicy.for_rule(rule, settings.emotion_values, settings.emotion_map)
        chosen = policy.for_conversation(self.job.conversation)
        return with_emotion_tag(events, policy, chosen, self.record.emotion_repaired_now)

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
            await close_events(events)

    def finish(self) -> None:
        """Release the slot and the control, log the record: once, whoever calls it first."""
        if self._done:
            return
        self._done = True
        if self._first is not None and not self._first.done():
            self._first.cancel()  # nobody will read it: stop the upstream request now
        generation = self.shared or self.twin_of
        if generation is not None:
            generation.release(self.control)
        self.services.gate.leave()
        self.services.conversations.finish(self.control)
        self.record.finish(self.services.metrics)
        if self.services.capture is not None and self._captured is not None:
            self.services.capture.submit(self._captured.snapshot(self.record))
