"""The streamed reply on the socket: SSE bytes, keep-alives, a client that leaves or stops reading.

The status and headers go out with the first frame or keep-alive, not before: by then a
fallback reply is known and can be marked in a header (a client that has waited `keepalive`
seconds gets them with the keep-alive, well within Tavus' ~10 s read timeout).

One watcher task per response does everything that is not writing the reply: it notices the
client leaving (`http.disconnect`) and cancels the stream at once (so the upstream read stops),
and it writes a `: keep-alive` comment whenever nothing was written for `keepalive` seconds
(while the model thinks; Tavus' client gives up after ~10 s of silence). Each write of the reply
has its own deadline, so a client that stops reading is dropped after `send_timeout`.

Why not sse-starlette's `EventSourceResponse` (the brief's stock part): issue 24 put it back
and measured it beside this one in the same runs of benchmarks/relay_latency.py on the idle
machine (short body, 120 requests per target, 3 runs): as stock as it comes, it added 0.50-0.61
ms to the time to first token (extra p50 over the raw relay +2.56 / +2.63 / +2.56 ms against
+2.04 / +2.02 / +2.06) and 10-14 % CPU per request (14.8 / 15.1 / 14.6 ms against 13.1 / 13.8 /
12.8); with an adapter on its `send` for what it lacks (headers with the first frame, so a
fallback is marked without waiting a keep-alive interval; the owner's release before `[DONE]`)
+0.6-0.7 ms and 18-22 %. Its per-response task group (four tasks) and a cancel scope per send
cost that. Either way this module saves more than the bar a hand-written part must clear
(0.2 ms p50 or 10 % CPU), so it stays. `[DONE]` goes out with the end of the body, after the
completion's owner has released its slot (see `stream`). An earlier idle measurement this
round, against a variant that waited for the first event before starting the stock response,
had found 5-7 % CPU and no p50. Each frame is one whole `transport.write`, so a keep-alive never
splits an event.
It is a plain subclass: Starlette's `Response.__init__` sets the status, media type and headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from server.responders.base import close_events
from server.wire.sse import DONE_FRAME, KEEPALIVE_FRAME

logger = logging.getLogger(__name__)

BURST_FRAMES = 4
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class SSEResponse(Response):
    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        keepalive: float,
        send_timeout: float,
        on_close: Callable[[], None] = lambda: None,
        late_headers: Callable[[], list[tuple[bytes, bytes]]] = list,
    ) -> None:
        super().__init__(headers=SSE_HEADERS, media_type="text/event-stream")
        # The body is streamed: no length (the parent counts the empty body it renders).
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.frames = frames
        self.late_headers = late_headers
        self.keepalive = keepalive
        self.send_timeout = send_timeout
        self.on_close = on_close
        self.ending = False  # set at the last frame: no keep-alive may follow it
        self._tail = b""  # the last frame, held for `end`
        self._client_gone = False
        self._last_write = 0.0
        self._started = False
        self._start_lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self.stream(receive, send):
            await self.end(send)

    async def stream(self, receive: Receive, send: Send) -> bool:
        """Write every frame but `[DONE]` (with keep-alives while quiet): True when the stream
        ran to its end and `end` should follow. The completion's owner releases what it holds
        in between, so a client that sees `[DONE]` or the end finds it released."""
        streaming = asyncio.current_task()
        assert streaming is not None
        try:
            self._last_write = asyncio.get_running_loop().time()  # the keep-alive clock starts
            watcher = asyncio.ensure_future(self._watch(receive, send, streaming))
            try:
                sent = 0
                async for frame in self.frames:
                    if frame is DONE_FRAME:
                        # The last frame: `end` writes it with the end of the body, after the
                        # owner's release (openai-python stops reading at [DONE], so a client
                        # with its answer finds the slot free); no keep-alive comes after it.
                        self.ending = True
                        self._tail = frame
                        continue
                    await self._start(send)
                    await self._send(send, _body(frame))
                    sent += 1
                    if not sent % BURST_FRAMES:
                        # A burst (a buffered upstream, or the offline responder) never lets the
                        # loop notice a client that left: turn it now and then, before asyncio
                        # starts logging writes to a dead socket (it does from the 5th).
                        await asyncio.sleep(0)
                self.ending = True
                await self._start(send)
                return True
            finally:
                watcher.cancel()
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
            streaming.uncancel()  # we cancelled ourselves because the client left: a normal end
        except TimeoutError:
            self._stopped_reading()
        finally:
            await close_events(self.frames)  # stops the upstream read, however the send ended
            self.on_close()
        return False

    async def end(self, send: Send) -> bool:
        """The last frame (`[DONE]`, held by `stream`) and the end of the body, in one write:
        False when the client stopped reading first."""
        try:
            await self._send(send, _body(self._tail, more=False))
        except TimeoutError:
            self._stopped_reading()
            return False
        return True

    def _stopped_reading(self) -> None:
        logger.warning("client stopped reading for %ss; closing its stream", self.send_timeout)

    async def _start(self, send: Send) -> None:
        """Send the status and headers once, just before the first frame or keep-alive: by then
        a fallback is known, and `late_headers` can say so
        (server/completion/fallback_marker.py)."""
        if self._started:
            return
        async with self._start_lock:  # the watcher's keep-alive and the first frame may race
            if self._started:
                return
            headers = self.raw_headers + self.late_headers()
            await self._send(
                send, {"type": "http.response.start", "status": 200, "headers": headers}
            )
            self._started = True

    async def _send(self, send: Send, message: Message) -> None:
        async with asyncio.timeout(self.send_timeout):
            await send(message)
        self._last_write = asyncio.get_running_loop().time()

    async def _watch(self, receive: Receive, send: Send, streaming: asyncio.Task[None]) -> None:
        """Until cancelled: keep-alives while quiet, and cancel the stream if the client leaves."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout_at(self._last_write + self.keepalive):
                    message = await receive()
            except TimeoutError:
                if not self.ending and loop.time() - self._last_write >= self.keepalive:
                    # A dead client or an ended stream is the stream's own write to report.
                    with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                        await self._start(send)
                        await self._send(send, _body(KEEPALIVE_FRAME))
                continue
            if message["type"] == "http.disconnect":
                self._client_gone = True
                streaming.cancel()
                return


def _body(data: bytes, more: bool = True) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}
