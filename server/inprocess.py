"""Run the app under uvicorn on a loopback port in a background thread.

Used by `perception-llm compare` (when no `--url` is given) and by the tests. The listening
socket is bound before the server thread starts, so a client may connect at once: the kernel
queues the connection until uvicorn accepts it, with no polling.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from server.app import create_app
from server.http.protocol import GuardedHttpProtocol
from server.settings import Settings


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    return sock


@dataclass(frozen=True)
class LiveServer:
    url: str  # http://127.0.0.1:PORT
    app: FastAPI  # its `state` holds the loop, gate and registry, for diagnostics


@contextmanager
def running_server(settings: Settings, log_level: str = "warning") -> Iterator[str]:
    """Yield the base URL (`http://127.0.0.1:PORT`) of a live server with `settings`."""
    with live_server(settings, log_level) as server:
        yield server.url


@contextmanager
def live_server(settings: Settings, log_level: str = "warning") -> Iterator[LiveServer]:
    sock = listening_socket()
    port = sock.getsockname()[1]
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        http=GuardedHttpProtocol,
        timeout_keep_alive=5,
        loop="asyncio",  # as `serve` runs
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive():  # the lifespan has run: services are up
        if time.monotonic() > deadline:
            raise RuntimeError("the in-process server did not start in 15 s")
        time.sleep(0.005)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
