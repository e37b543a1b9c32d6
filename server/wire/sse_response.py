"""The streamed reply on the socket: sse-starlette's `EventSourceResponse`, configured for OpenAI.

The stock part (issue 24, the brief's package list). A hand-written ASGI response replaced it in
issue 13; measured beside it in the same runs of benchmarks/relay_latency.py on an idle machine,
the hand-written one saved 5-7 % CPU per request and no time to first token (-0.14 to +0.14 ms
p50), under the 0.2 ms or 10 % a hand-written part must save, so the stock one is back. What it
does for us:

- a `: keep-alive` comment every `keepalive` seconds (while the model thinks; Tavus' client
  gives up after ~10 s of silence);
- a deadline per send: a client that stops reading is dropped after `send_timeout`
  (`SendTimeoutError`, logged by the caller);
- a client that leaves (`http.disconnect`) cancels the stream at once, so the upstream read
  stops (the frames' own `finally` runs);
- server shutdown: our drain (server/http/shutdown.py) ends streams within its grace period;
  sse-starlette's own exit-signal cancellation waits `shutdown_grace` longer, so ours comes first.

`ResponseEdges` is the one adjustment, made on the ASGI `send` it is given, not inside the
library: the status line waits for the first bytes of the body, so a fallback known by then is
marked in a header; and the end of the reply (`[DONE]` and the end of the body) waits for the
completion's owner, which releases what it holds first (a client that has its answer finds the
slot free). Frames are the bytes of server/wire/sse.py, written untouched (`sep="\\n"`), each
one whole ASGI message, so a keep-alive never splits an event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Send

from server.wire.sse import DONE_FRAME, KEEPALIVE_FRAME

__all__ = ["ResponseEdges", "SendTimeoutError", "event_stream", "stopped_reading"]

logger = logging.getLogger(__name__)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
BURST_FRAMES = 4


def _keepalive() -> ServerSentEvent:
    return ServerSentEvent(comment="keep-alive", sep="\n")


def event_stream(
    frames: AsyncIterator[bytes],
    *,
    keepalive: float,
    send_timeout: float,
    shutdown_grace: float = 0.0,
) -> EventSourceResponse:
    """The response writing `frames` (whole SSE events as bytes), with keep-alives."""
    return EventSourceResponse(
        frames,
        headers=SSE_HEADERS,
        sep="\n",
        ping=keepalive,
        ping_message_factory=_keepalive,
        send_timeout=send_timeout,
        shutdown_grace_period=shutdown_grace,
    )


def stopped_reading(send_timeout: float) -> None:
    logger.warning("client stopped reading for %ss; closing its stream", send_timeout)


class ResponseEdges:
    """The `send` a response writes through: it holds back the two edges of the response.

    - `http.response.start` goes out with the first body message (a frame or a keep-alive),
      with `late_headers()` added: by then a fallback is known (server/completion/
      fallback_marker.py). A client waiting for the first event gets the headers with the
      first keep-alive, well within Tavus' ~10 s read timeout.
    - The end of the reply, `[DONE]` and the end of the body (`more_body: False`), is kept
      until `end()`, which the owner calls after its release, and then written as one message:
      a client that has its answer (openai-python stops reading at `[DONE]`) finds the slot
      free and the request logged. Keep-alives after `[DONE]` are dropped.
    - Every `BURST_FRAMES` frames the loop turns once: a burst (a buffered upstream, the offline
      responder) never suspends on its own, so the loop would not notice a client that left,
      and asyncio logs every write to a dead socket from the 5th on.
    """

    def __init__(
        self,
        send: Send,
        *,
        send_timeout: float,
        late_headers: Callable[[], list[tuple[bytes, bytes]]] = list,
    ) -> None:
        self._send = send
        self._send_timeout = send_timeout
        self._late_headers = late_headers
        self._start: Message | None = None  # held until the first body message
        self._start_lock = asyncio.Lock()  # a keep-alive and the first frame may race
        self._end: Message | None = None  # held until `end()`
        self._done = False  # the [DONE] frame came, and is held with the end
        self._frames = 0

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._start = message
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        if self._start is not None:
            await self._send_start()
        if not message.get("more_body", False):
            self._end = message
            return
        body = message.get("body", b"")
        if body == DONE_FRAME:
            self._done = True
            return
        if self._done and body == KEEPALIVE_FRAME:
            return
        await self._send(message)
        self._frames += 1
        if not self._frames % BURST_FRAMES:
            await asyncio.sleep(0)

    async def end(self) -> None:
        """Write the held end of the body, if the response got that far."""
        if self._end is None:
            return
        end, self._end = self._end, None
        if self._done:
            end = {**end, "body": DONE_FRAME + end.get("body", b"")}
        try:
            async with asyncio.timeout(self._send_timeout):
                await self._send(end)
        except TimeoutError:
            stopped_reading(self._send_timeout)

    async def _send_start(self) -> None:
        async with self._start_lock:
            if self._start is None:  # the other writer sent it while this one waited
                return
            start = self._start
            headers = [*start.get("headers", ()), *self._late_headers()]
            await self._send({**start, "headers": headers})
            self._start = None
