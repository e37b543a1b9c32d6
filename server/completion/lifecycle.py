"""One completion's whole life, owned by one object, as openai-python's `Stream` owns its response.

`Completion.open` takes plain values resolved at the HTTP edge (`CallFacts`: no Starlette
`Request` comes this far) and a preparation to await; it takes the concurrency slot (429 past the
cap), prepares, and registers the request with the conversation registry. From then on the
completion is answered by `respond`, an ASGI call that

- builds the event chain in one method, `_head`: the source (Tavus' configuration check, a twin's
  read of the identical request in flight, a shared leader's read, or the responder's own
  stream) → the spoken fallback when the source fails before its first event → the emotion tag;
- writes it: SSE frames (server/completion/streaming.py, server/wire/sse_response.py), or one
  JSON completion;
- releases everything in one `finally`, however the request ends (a reply that ran to its end,
  an HTTP error before the first byte, a client that left, a shutdown): the upstream iterator,
  the sharing hold, the control, the slot, the record's log line, the capture.

Per token, a streamed reply passes through the source's generator, the emotion tag's (only
under Tavus' Phoenix-4 rule) and the one that writes chunks, then the response's send loop —
where there were six nested generators, each with its own `finally`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from server.capture.privacy import kept_headers
from server.capture.rows import CallSnapshot
from server.completion.control import conversation_id_of
from server.completion.emotion_tags import EmotionPolicy, with_emotion_tag
from server.completion.fallback_marker import fallback_headers, fallback_reason
from server.completion.outcome import Outcome
from server.completion.preparation import Prepared
from server.completion.prompting import PROMPT_HEADER
from server.completion.record import CompletionRecord
from server.completion.sharing import SharedGeneration, as_twin
from server.completion.streaming import (
    Head,
    after,
    collect_completion,
    head_of,
    stream_chunks,
    word_events,
)
from server.errors import APIError, SupersededError
from server.http.disconnect import until_disconnected
from server.http.observability import CONVERSATION_ID, log_safe
from server.responders.base import CompletionJob, ResponseEvent, close_events
from server.services import Services
from server.wire.chunks import ChunkEncoder
from server.wire.sse_response import SSEResponse

logger = logging.getLogger(__name__)
CONFIG_CHECK_ID = "tavus-openai-compat-test"  # observed from a public integration's live call
CONFIG_CHECK_REPLY = "Custom LLM configuration test successful."


async def _replay(events: list[ResponseEvent]) -> AsyncIterator[ResponseEvent]:
    for event in events:
        yield event


async def _resolved(head: Head) -> Head:
    return head


@dataclass(frozen=True)
class CallFacts:
    """What a completion needs from the HTTP request, resolved at the edge into plain values."""

    request_id: str
    raw: bytes  # the body as sent: one part of the key that makes two requests twins
    conversation_id: str | None
    choices: tuple[str, ...]  # what else chooses the reply: query string, template header
    headers: dict[str, str] = field(default_factory=dict)  # kept for the capture (allow-list)

    @classmethod
    def at_edge(
        cls,
        request_id: str,
        raw: bytes,
        headers: Mapping[str, str],
        query_string: str,
        capturing: bool,
    ) -> CallFacts:
        return cls(
            request_id=request_id,
            raw=raw,
            conversation_id=conversation_id_of(headers),
            choices=(query_string, headers.get(PROMPT_HEADER, "")),
            headers=kept_headers(headers) if capturing else {},
        )


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


class Completion:
    """Owns one completion from its slot to its log line (see the module docstring)."""

    def __init__(
        self, services: Services, facts: CallFacts, prepared: Prepared, key: Any | None
    ) -> None:
        self.services = services
        self.prepared = prepared
        self.twin_of: SharedGeneration | None = services.shared.twin_of(key)
        self.shared: SharedGeneration | None = None  # this request leads it: twins may join
        self._share_key = key
        self.control = services.conversations.start(
            facts.conversation_id, twin=self.twin_of is not None
        )
        if self.twin_of is not None:
            self.twin_of.join(self.control)  # its place is kept from now: nothing is dropped
        self.job = CompletionJob(
            request=prepared.completion_request,
            body=prepared.body,
            conversation=prepared.conversation,
            prompt_messages=prepared.rendered.messages,
            control=self.control,
        )
        self.responder = services.responder.pick(self.job)  # once: model name and stream agree
        self.encoder = ChunkEncoder(model=self.responder.model_for(self.job))
        CONVERSATION_ID.set(log_safe(self.control.conversation_id))
        self.record = CompletionRecord(
            request_id=facts.request_id,
            conversation_id=self.control.conversation_id,
            model=self.encoder.model,
            template=prepared.rendered.template,
            stream=prepared.completion_request.stream,
            prompt_tokens=prepared.rendered.prompt_tokens,
        )
        self._captured: CaptureContext | None = None
        if services.capture is not None:
            self.record.capturing = True
            self._captured = CaptureContext(facts.headers, prepared)
        # Chosen now, before anything awaits: a leader's shared generation is registered before
        # an identical request can arrive (it joins as a twin instead of superseding this one).
        self._first: asyncio.Task[ResponseEvent] | None = None  # the first read, under way
        self._source = self._start_source()
        self._tagged: AsyncIterator[ResponseEvent] | None = None

    @classmethod
    async def open(
        cls, services: Services, facts: CallFacts, prepare: Callable[[], Awaitable[Prepared]]
    ) -> Completion:
        """Take the slot (429 past the cap), prepare (off the loop when large), register. If
        preparing fails, the slot is released before the error propagates; from the return on,
        `respond` releases it."""
        services.gate.enter()
        try:
            prepared = await prepare()
            key = None
            if services.settings.share_identical_requests:
                key = services.shared.key(facts.conversation_id, facts.raw, *facts.choices)
            completion = cls(services, facts, prepared, key)
        except BaseException:
            services.gate.leave()
            raise
        if completion._first is not None:
            # One turn of the loop lets the upstream request go out (its task runs up to the
            # socket write) before our own response setup: connecting and sending overlap with
            # it (0.28 -> 0.10 ms from request to upstream request on an idle server).
            await asyncio.sleep(0)
        return completion

    @property
    def is_config_check(self) -> bool:
        """Tavus validating a persona's LLM settings: it sends this conversation id."""
        return (
            self.control.conversation_id == CONFIG_CHECK_ID
            and self.services.settings.answer_config_check
        )

    async def respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request, then release everything: the one exit path. The reply's last
        write (the JSON body, or `[DONE]` with the end of the stream) follows the release of the
        slot, upstream and sharing, so a client that has its answer finds the slot free, as a
        test or a load balancer expects; the log line, metrics and capture follow the last
        write, so its outcome is known."""
        settings = self.services.settings
        last_write: Callable[[], Awaitable[bool]] | None = None
        try:
            if not self.prepared.completion_request.stream:
                reply = collect_completion(
                    self._head(fallback=False), self.encoder, self.record, settings.max_reply_chars
                )
                answer = JSONResponse(await until_disconnected(receive, reply))

                async def write_answer() -> bool:
                    await answer(scope, receive, send)
                    return True

                last_write = write_answer
                return
            if settings.fallback_text:
                # Start streaming at once: keep-alives flow while the upstream thinks, and a
                # failure before the first token becomes the spoken fallback line.
                head = self._head(fallback=True)
            else:  # wait for the first event now, so a failure can still be an HTTP error
                try:
                    head = _resolved(await until_disconnected(receive, self._head(False)))
                except BaseException as error:
                    message = error.message if isinstance(error, APIError) else None
                    self.record.ended_by(error, message)
                    raise
            include_usage = self.prepared.completion_request.include_usage
            response = SSEResponse(
                stream_chunks(head, self.encoder, include_usage, self.record),
                keepalive=settings.keepalive_seconds,
                send_timeout=settings.send_timeout_seconds,
                late_headers=lambda: fallback_headers(self.record.fallback),
            )
            if await response.stream(receive, send):
                last_write = partial(response.end, send)
        finally:
            try:
                await self._release()
                if last_write is not None and not await last_write():
                    # The client stopped reading before the end: it never got `[DONE]`.
                    self.record.outcome = Outcome.CANCELLED
            finally:
                self._account()

    async def _head(self, fallback: bool) -> Head:
        """The event chain, built here and nowhere else: source → fallback → emotion tag."""
        source = self._source
        try:
            first, rest = await self._first_read()
        except SupersededError:
            raise
        except APIError as error:
            text = self.services.settings.fallback_text
            if not fallback or not text:
                raise
            logger.warning(
                "upstream failed before the first token, speaking the fallback: %s", error.message
            )
            self.record.spoke_fallback(error.message, fallback_reason(error))
            await close_events(source)
            spoken = word_events(text)
            first, rest = spoken[0], _replay(spoken[1:])
        rule = self.job.conversation.emotion_rule
        settings = self.services.settings
        if rule is None or not settings.emotion_tags or first is None:
            return first, rest
        policy = EmotionPolicy.for_rule(rule, settings.emotion_values, settings.emotion_map)
        chosen = policy.for_conversation(self.job.conversation)
        self._tagged = with_emotion_tag(
            after(first, rest), policy, chosen, self.record.emotion_repaired_now
        )
        return await head_of(self._tagged)

    async def _first_read(self) -> Head:
        if self._first is None:
            return await head_of(self._source)
        try:
            return await self._first, self._source
        except StopAsyncIteration:
            return None, self._source

    def _start_source(self) -> AsyncIterator[ResponseEvent]:
        """Where the reply's events come from (its upstream request starts on the first read)."""
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
        self._first = asyncio.ensure_future(anext(events))  # the upstream request starts now
        return events

    async def _release(self) -> None:
        try:
            if self._first is not None:
                if not self._first.done():
                    self._first.cancel()  # nobody will read it: stop the upstream request now
                await asyncio.gather(self._first, return_exceptions=True)  # its end is retrieved
            if self._tagged is not None:
                await close_events(self._tagged)
            await close_events(self._source)  # stops the upstream read at once
        finally:
            generation = self.shared or self.twin_of
            if generation is not None:
                generation.release(self.control)
            self.services.gate.leave()
            self.services.conversations.finish(self.control)

    def _account(self) -> None:
        """The record's log line and metrics, and the capture: after the last write, whose
        failure (a client that stopped reading) still changes the outcome."""
        self.record.finish(self.services.metrics)
        if self.services.capture is not None and self._captured is not None:
            self.services.capture.submit(self._captured.snapshot(self.record))
