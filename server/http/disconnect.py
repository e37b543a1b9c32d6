"""Noticing a client that leaves before our response has started.

Once streaming, `SSEResponse` watches for `http.disconnect` and cancels the stream. Before that
(waiting for the upstream's first token, or for a whole non-streamed reply) nothing is reading
the ASGI `receive` channel, so `until_disconnected` races the work against it and cancels the
work the moment the client goes. Plain ASGI only: Starlette's `BaseHTTPMiddleware`
would hide the disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

from server.errors import ClientDisconnectedError

T = TypeVar("T")


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # we are cancelled ourselves (shutdown): stop both, re-raise
        task.cancel()
        watcher.cancel()
        raise
    watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientDisconnectedError("The client closed the connection.")
