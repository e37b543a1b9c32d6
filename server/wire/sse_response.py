"""The streamed reply on the socket: sse-starlette's `EventSourceResponse`, configured for OpenAI.

The stock part (issue 24): a hand-written ASGI response replaced it in issue 13, and measured
side by side in one run of benchmarks/relay_latency.py it saved nothing (stock p50 time to first
token 0.5 ms *lower*, CPU per request within 6 %), so it came back. What it does for us:

- a `: keep-alive` comment whenever `keepalive` seconds pass (while the model thinks; Tavus'
  client gives up after ~10 s of silence), and none after `[DONE]` (`stop_pings`);
- a deadline per send: a client that stops reading is dropped after `send_timeout`
  (`SendTimeoutError`, logged by the caller);
- a client that leaves (`http.disconnect`) cancels the stream at once, so the upstream read
  stops (the frames' own `finally` runs);
- server shutdown: our drain (server/http/shutdown.py) ends streams within its grace period;
  sse-starlette's own exit-signal cancellation waits `shutdown_grace` longer, so ours comes first.

Frames are the bytes of server/wire/sse.py, written untouched (`sep="\\n"`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError

__all__ = ["SendTimeoutError", "event_stream", "stop_pings"]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _keepalive() -> ServerSentEvent:
    return ServerSentEvent(comment="keep-alive", sep="\n")


def event_stream(
    frames: AsyncIterator[bytes],
    *,
    keepalive: float,
    send_timeout: float,
    shutdown_grace: float = 0.0,
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    """The response writing `frames` (whole SSE events as bytes), with keep-alives."""
    return EventSourceResponse(
        frames,
        headers={**SSE_HEADERS, **(headers or {})},
        sep="\n",
        ping=keepalive,
        ping_message_factory=_keepalive,
        send_timeout=send_timeout,
        shutdown_grace_period=shutdown_grace,
    )


def stop_pings(response: EventSourceResponse) -> None:
    """No keep-alive may follow: called right before `[DONE]` (sse-starlette pings only while
    the response is `active`)."""
    response.active = False
