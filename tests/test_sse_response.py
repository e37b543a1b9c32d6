"""The hand-written SSE response is a correct subclass of Starlette's `Response` (issue 24)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.responses import Response
from starlette.types import Message

from server.wire.sse import DONE_FRAME
from server.wire.sse_response import SSEResponse


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator


def test_the_parent_sets_status_media_type_and_headers() -> None:
    response = SSEResponse(_nothing(), keepalive=5, send_timeout=10)
    assert isinstance(response, Response)
    assert response.status_code == 200 and response.background is None
    headers = dict(response.raw_headers)
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-cache" and headers[b"x-accel-buffering"] == b"no"
    assert b"content-length" not in headers  # streamed: the parent's count of b"" is dropped
    assert response.headers["content-type"].startswith("text/event-stream")


def test_done_waits_for_the_end_and_goes_with_it_in_one_write() -> None:
    """openai-python stops reading at [DONE]: the owner releases between `stream` and `end`,
    so [DONE] must not go out before `end`."""

    async def frames() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield DONE_FRAME

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client stays
        raise AssertionError("unreachable")

    async def run() -> list[bytes]:
        response = SSEResponse(frames(), keepalive=5, send_timeout=10)
        assert await response.stream(receive, send)
        before_end = [m.get("body", b"") for m in sent]
        await response.end(send)
        return before_end

    before_end = asyncio.run(run())
    assert before_end == [b"", b"data: 1\n\n"]  # the status line (no body) and the frame
    assert sent[-1] == {"type": "http.response.body", "body": DONE_FRAME, "more_body": False}
    assert len(sent) == 3
