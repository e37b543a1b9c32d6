"""Turns a responder's events into the OpenAI wire format: SSE chunks, or one completion.

The OpenAI contract: every chunk shares id/created/model, the first delta carries
`role: "assistant"`, exactly one chunk has a `finish_reason`, a usage chunk (no choices) comes
only when asked for, and the stream always ends with `data: [DONE]`. An error after the stream
has started becomes a `data: {"error": …}` event followed by `[DONE]` (what openai-python raises
on). Cancellation (client gone) is never swallowed: the `finally` closes the events at once so
upstream work stops; the owner (server/completion/lifecycle.py) releases the rest.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from server.completion.fallback_marker import fallback_frame
from server.completion.outcome import Outcome
from server.completion.record import CompletionRecord
from server.completion.reply_size import DEFAULT_MAX_REPLY_CHARS, event_chars
from server.errors import APIError, ReplyTooLargeError, ShutdownError
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


Head = tuple[ResponseEvent | None, AsyncIterator[ResponseEvent]]
"""A reply's first event (None: the reply is empty) and the events after it."""


async def head_of(events: AsyncIterator[ResponseEvent]) -> Head:
    """`events`' first event, read now, and the rest."""
    try:
        return await anext(events), events
    except StopAsyncIteration:
        return None, events


async def stream_chunks(
    head: Awaitable[Head],
    encoder: ChunkEncoder,
    include_usage: bool,
    record: CompletionRecord,
) -> AsyncIterator[bytes]:
    """SSE bytes for a streamed completion (see module docstring); `DONE_FRAME` is the last.

    `head` is awaited inside the stream, so a slow first event costs no keep-alive; the events
    are read directly, one generator per token (the owner builds the chain in
    server/completion/lifecycle.py)."""
    role_sent = False
    finished = False
    usage: dict[str, Any] | None = None
    rest: AsyncIterator[ResponseEvent] | None = None

    def chunk(event: ResponseEvent) -> bytes | None:
        """The frame for `event` (None: nothing to send), a plain call: no generator per token."""
        nonlocal role_sent, finished, usage
        if event.usage is not None:
            usage = event.usage
        if record.capturing and not finished:
            record.capture_event(event)
        if finished or (event.delta is None and event.finish_reason is None):
            return None
        delta = event.delta or {}
        marker = b""
        if not role_sent:
            delta = {"role": "assistant", **delta}
            role_sent = True
            if record.fallback is not None:  # said before the reply, for developers
                marker = fallback_frame(record.fallback)
        if event.delta:
            record.token_sent()
        finished = event.finish_reason is not None
        return marker + data_event(encoder.choice(delta, event.finish_reason))

    try:
        try:
            first, rest = await head
            if first is not None:
                if (frame := chunk(first)) is not None:
                    yield frame
                async for event in rest:
                    if (frame := chunk(event)) is not None:
                        yield frame
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
        yield DONE_FRAME
    except BaseException as error:
        record.ended_by(error)
        raise
    finally:
        if rest is not None:
            await close_events(rest)


async def collect_completion(
    head: Awaitable[Head],
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
    rest: AsyncIterator[ResponseEvent] | None = None
    try:
        first, rest = await head
        async for event in after(first, rest):
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
        if rest is not None:
            await close_events(rest)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if tool_calls:
        message["tool_calls"] = [tool_calls[i] for i in sorted(tool_calls)]
    elif message["content"] is None:
        message["content"] = ""
    return encoder.completion(message, finish_reason or "stop", usage or ZERO_USAGE)


async def after(
    first: ResponseEvent | None, rest: AsyncIterator[ResponseEvent]
) -> AsyncIterator[ResponseEvent]:
    """`first`, then `rest` (nothing when `first` is None: the reply was empty)."""
    if first is not None:
        yield first
        async for event in rest:
            yield event
