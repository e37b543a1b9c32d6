"""The CPU work of a request (decoding, validating, parsing, rendering), kept off the event loop
when the body is large, behind a gate.

Issue 23: `/v1/perception/parse`, `/v1/prompts/render` and `/v1/playground/encode` did all
their work on the loop (250 system messages of 16k characters held `/healthz` for 3.2 s), and
on the completion path 8 bodies of 120,000 tiny messages in a loop made load shedding refuse
every legitimate call. Large bodies are now handled by one worker thread (with the GIL, more
threads only make the loop wait longer for its turn, see `Services.prepare_limiter`); Python
code in it gives the GIL back every few milliseconds, and the C/Rust steps that do not (JSON
decoding, pydantic validation) are bounded by the JSON-object cap (server/http/body.py). When
`MAX_WAITING` requests already wait for that thread, a new one gets 429 at once instead of
queueing CPU work nobody will wait for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from starlette.responses import Response

from server.errors import RateLimitError

if TYPE_CHECKING:  # only a type here: importing it would load the whole app (the CLI's
    # `parse` and `render` use this module without a server)
    from server.services import Services

T = TypeVar("T")

# Below this the thread hop (~0.1 ms) costs more than the work, and small bodies are what
# Tavus sends; above it a body's decoding and parsing take milliseconds to seconds.
OFF_LOOP_BODY_BYTES = 256 * 1024
MAX_WAITING = 8


async def run_request_work(size: int, services: Services, work: Callable[[], T]) -> T:
    """`work()`, on the loop for a small body, else in the worker thread (429 when busy)."""
    if size <= OFF_LOOP_BODY_BYTES:
        return work()
    limiter = services.prepare_limiter
    if limiter.statistics().tasks_waiting >= MAX_WAITING:
        raise RateLimitError(
            f"{MAX_WAITING} large requests are already waiting to be processed; retry shortly.",
            code="server_busy",
            headers={"Retry-After": "1"},
        )
    return await anyio.to_thread.run_sync(work, limiter=limiter)


def json_bytes(result: Any) -> Response:
    """`result` as a JSON response, encoded by the caller (inside the work): FastAPI's own
    encoding of a returned dict runs on the loop, and a parse of a 4 MB body answers with
    megabytes of JSON (jsonable_encoder walked it for 150 ms)."""
    body = json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, media_type="application/json")
