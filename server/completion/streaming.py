"""Turns a responder's events into the OpenAI wire format: SSE chunks, or one completion.

The OpenAI contract: every chunk shares id/created/model, the first delta carries
`role: "assistant"`, exactly one chunk has a `finish_reason`, a usage chunk (no choices) comes
only when asked for, and the stream always ends with `data: [DONE]`. An error after the stream
has started becomes a `data: {"error": …}` event followed by `[DONE]` (what openai-python raises
on). Cancellation (client gone) is never swallowed: the `finally` closes the responder's
iterator at once so upstream work stops, and the request's record is logged either way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from server.completion.fallback_marker import fallback_frame, fallback_reason
from server.completion.outcome import Outcome
from server.completion.record import CompletionRecord
from server.completion.reply_size import DEFAULT_MAX_REPLY_CHARS, event_chars
from server.errors import APIError, ReplyTooLargeError, ShutdownError, SupersededError
from server.responders.base import ResponseEvent, close_events, words
from server.wire.chunks import ChunkEncoder, merge_tool_call
from server.wire.sse import DONE_FRAME, compact_json, data_event

logger = logging.getLogger(__name__)

ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def word_events(text: str) -> list[ResponseEvent]:
    """`text` as word-by-word content deltas, ending with `finish_reason: "stop"`."""
    return [
        *(ResponseEvent(delta={"content": word}) for word in words(text)),
        ResponseEvent(finish_reason="stop"),
    ]


async def with_fallback(
    events: AsyncIterator[ResponseEvent], text: str, record: CompletionRecord
) -> AsyncIterator[ResponseEvent]:
    """`events`, or `text` spoken instead when they fail before the first one (never after)."""
    try:
        try:
            first = await anext(events)
        except StopAsyncIteration:
            return
        except SupersededError:
            raise
        except APIError as error:
            logger.warning(
                "upstream failed before the first token, speaking the fallback: %s", error.message
            )
            record.spoke_fallback(error.message, fallback_reason(error))
            for event in word_events(text):
                yield event
            return
        yield first
        async for event in events:
            yield event
    finally:
        await close_events(events)


async def prefetched(events: AsyncIterator[ResponseEvent]) -> AsyncIterator[ResponseEvent]:
    """Wait for the first event now (so a failure can still be an HTTP error), then stream."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await close_events(events)
        raise

    async def chained() -> AsyncIterator[ResponseEvent]:
        try:
            if first is not None:
                yield first
                async for event in events:
                    yield event
        finally:
            await close_events(events)

    return chained()


async def stream_chunks(
    events: AsyncIterator[ResponseEvent],
    encoder: ChunkEncoder,
    include_usage: bool,
    record: CompletionRecord,
    on_end: Callable[[], None],
    before_done: Callable[[], None] = lambda: None,
) -> AsyncIterator[bytes]:
    """SSE bytes for a streamed completion (see module docstring).

    `before_done` runs right before `[DONE]` is yielded: the route uses it to stop keep-alive
    pings, which could otherwise land after `[DONE]`.
    """
    role_sent = False
    finished = False
    usage: dict[str, Any] | None = None
    try:
        try:
            async for event in events:
                if event.usage is not None:
                    usage = event.usage
                if record.capturing and not finished:
                    record.capture_event(event)
                if finished or (event.delta is None and event.finish_reason is None):
                    continue
                delta = event.delta or {}
                if not role_sent:
                    delta = {"role": "assistant", **delta}
                    role_sent = True
                    if record.fallback is not None:  # said before the reply, for developers
                        yield fallback_frame(record.fallback)
                if event.delta:
                    record.token_sent()
                yield data_event(encoder.choice(delta, event.finish_reason))
                finished = event.finish_reason is not None
            if not finished:
                yield data_event(encoder.choice({} if role_sent else {"role": "assistant"}, "stop"))
            if include_usage:
                yield data_event(encoder.usage(usage or ZERO_USAGE))
        except ShutdownError:
            # The grace period is over: end the reply where it is, as a normal stream ends.
            record.outcome = Outcome.SHUTDOWN
            if not finished:
                yield data_event(encoder.choice({} if role_sent else {"role": "assistant"}, "stop"))
        except APIError as error:
            logger.warning("stream failed after it started: %s", error.message)
            record.ended_by(error, error.message)
            yield data_event(compact_json(error.body()))
        except Exception:  # a bug must still end the stream properly, never cut it mid-way
            logger.exception("stream failed after it started")
            record.outcome, record.error = Outcome.FAILED, "internal error"
            body = APIError("The server had an error while streaming.").body()
            yield data_event(compact_json(body))
        before_done()
        yield DONE_FRAME
    except BaseException as error:
        record.ended_by(error)
        raise
    finally:
        await close_events(events)
        on_end()


async def collect_completion(
    events: AsyncIterator[ResponseEvent],
    encoder: ChunkEncoder,
    record: CompletionRecord,
    max_chars: int = DEFAULT_MAX_REPLY_CHARS,
) -> dict[str, Any]:
    """A non-streamed `chat.completion`: content joined, tool-call fragments merged by index.
    The reply is held whole, so it is bounded: past `max_chars` the upstream is closed and the
    call ends with a 502 (issue 23: a fast upstream grew one to 1.7 GiB before its deadline)."""
    content: list[str] = []
    held = 0
    tool_calls: dict[int, dict[str, Any]] = {}
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    try:
        async for event in events:
            if event.usage is not None:
                usage = event.usage
            if record.capturing:
                record.capture_event(event)
            if event.finish_reason is not None and finish_reason is None:
                finish_reason = event.finish_reason
            if event.delta:
                held += event_chars(event)
                if held > max_chars:
                    raise ReplyTooLargeError(
                        f"The reply grew past {max_chars} characters "
                        "(PERCEPTION_LLM_MAX_REPLY_CHARS); ask for a stream or a shorter reply."
                    )
                record.token_sent()
                if isinstance(event.delta.get("content"), str):
                    content.append(event.delta["content"])
                for fragment in event.delta.get("tool_calls") or ():
                    merge_tool_call(tool_calls, fragment)
    except BaseException as error:
        record.ended_by(error, error.message if isinstance(error, APIError) else None)
        raise
    finally:
        await close_events(events)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if tool_calls:
        message["tool_calls"] = [tool_calls[i] for i in sorted(tool_calls)]
    elif message["content"] is None:
        message["content"] = ""
    return encoder.completion(message, finish_reason or "stop", usage or ZERO_USAGE)
