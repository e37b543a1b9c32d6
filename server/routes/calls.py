"""`/v1/calls…`: the captured calls, for the playground's Calls view (and anyone's tooling).

The store is synchronous (server/capture/store.py), so every read runs in a worker thread; the
live feed is an SSE stream of "a batch was written, newest id N" that the page answers by
reloading what it shows.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Request
from starlette.responses import Response

from server.capture.store import CaptureStore, CaptureStoreError
from server.capture.writer import CallCapture
from server.errors import NotFoundError, ServiceUnavailableError
from server.http.auth import AuthDep
from server.services import services
from server.wire.sse import compact_json, data_event
from server.wire.sse_response import SSEResponse

T = TypeVar("T")
router = APIRouter(dependencies=[AuthDep])
JSON_COLUMNS = ("headers", "request", "parsed", "prompt", "reply")


def capture_of(request: Request) -> CallCapture:
    capture = services(request).capture
    if capture is None:
        raise NotFoundError(
            "Calls are not being captured: start the server with PERCEPTION_LLM_CAPTURE set "
            "(or `perception-llm serve --capture`)."
        )
    return capture


@router.get("/v1/calls", summary="Captured conversations, newest first; or one's calls")
async def list_calls(
    request: Request, conversation: str | None = None, limit: int = 100
) -> dict[str, Any]:
    """`capturing: false` (and no data) when the server does not record calls."""
    capture = services(request).capture
    if capture is None:
        return {"object": "list", "capturing": False, "data": []}
    store = await ready_store(capture)
    limit = max(1, min(limit, 1000))
    if conversation is None:
        rows = await from_store(store.conversations, limit)
    else:
        rows = await from_store(store.calls_of, conversation, limit)
    return {"object": "list", "capturing": True, "data": rows}


async def from_store(read: Callable[..., T], *args: Any) -> T:
    """A store read in a worker thread; 503 when the database fails it (down, read-only)."""
    try:
        return await anyio.to_thread.run_sync(read, *args)
    except CaptureStoreError as error:
        raise ServiceUnavailableError(str(error)) from None


async def ready_store(capture: CallCapture) -> CaptureStore:
    """The store with its schema in place (the writer creates it too; both are idempotent), or
    503 while the database cannot be reached."""
    if capture.ready:  # the usual case: no thread hop
        return capture.store
    try:
        await anyio.to_thread.run_sync(capture.ensure_schema)
    except CaptureStoreError as error:
        raise ServiceUnavailableError(str(error)) from None
    return capture.store


@router.get("/v1/calls/live", summary="Server-sent events: the newest captured call id")
async def live(request: Request) -> Response:
    capture = capture_of(request)
    await ready_store(capture)
    listener = capture.listen()
    newest = await from_store(capture.store.newest_id)

    async def frames() -> AsyncIterator[bytes]:
        yield data_event(compact_json({"newest": newest}))
        while True:
            yield data_event(compact_json({"newest": await listener.get()}))

    settings = services(request).settings
    return SSEResponse(
        frames(),
        keepalive=settings.keepalive_seconds,
        send_timeout=settings.send_timeout_seconds,
        on_close=lambda: capture.unlisten(listener),
    )


@router.get("/v1/calls/{call_id}", summary="One captured call, with everything recorded")
async def one_call(request: Request, call_id: int) -> dict[str, Any]:
    if not 0 < call_id < 2**63:  # past any database's integer: not a call (was a 500)
        raise NotFoundError(f"No captured call {call_id}.")
    store = await ready_store(capture_of(request))
    row = await from_store(store.call, call_id)
    if row is None:
        raise NotFoundError(f"No captured call {call_id}.")
    for name in JSON_COLUMNS:
        row[name] = json.loads(row[name])
    return row
