"""The hand-written SSE response is a correct subclass of Starlette's `Response` (issue 24)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.responses import Response

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
