"""Connection-level attacks that need no key: slow or silent clients, huge headers, too many
sockets. Raw sockets against the live server, with short deadlines so each case ends quickly.
(The load version, 1,000 slowloris sockets and 40 unfinished 50 MiB headers while a real
completion runs, is benchmarks/connection_attacks.py.)"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from server.services import services
from tests.conftest import make_settings
from tests.live import LiveServer, live_server

LIMITS = {
    "header_timeout_seconds": 0.5,
    "body_timeout_seconds": 0.5,
    "max_header_bytes": 8192,
    "max_connections": 24,
}


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(make_settings(**LIMITS)) as live:
        yield live


def connect(server: LiveServer) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (the socket timeout fails the test)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_silent_connection_is_closed(server: LiveServer) -> None:
    with connect(server) as sock:
        assert read_all(sock).startswith(b"HTTP/1.1 408")


def test_slowloris_headers_are_closed_at_the_header_deadline(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")  # and never more
        assert read_all(sock).startswith(b"HTTP/1.1 408")


def test_a_slow_body_is_closed_at_the_body_deadline(server: LiveServer) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 200\r\n\r\n{"messages": ['
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408") or answer == b""
    # The slot was taken before the body was read; it is released once the app sees the close.
    deadline = time.monotonic() + 5
    while services(server.app).gate.active and time.monotonic() < deadline:
        time.sleep(0.005)
    assert services(server.app).gate.active == 0


@pytest.mark.parametrize("finished", [False, True], ids=["unfinished", "complete"])
def test_oversized_headers_are_refused_with_431(server: LiveServer, finished: bool) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # up to 8 MiB, stopping as soon as the server has had enough
                sock.sendall(b"v" * 131072)
            if finished:
                sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = read_all(sock)
        except ConnectionResetError:
            answer = b""
    assert answer.startswith(b"HTTP/1.1 431") or answer == b""
    assert b"200 OK" not in answer


def test_past_the_connection_cap_new_sockets_are_closed_and_then_service_resumes(
    server: LiveServer,
) -> None:
    held = [connect(server) for _ in range(LIMITS["max_connections"])]
    try:
        extra = connect(server)
        with extra, contextlib.suppress(ConnectionResetError):
            assert extra.recv(1024) == b""  # closed at once, before any deadline
    finally:
        for sock in held:
            sock.close()
    # Every held socket is closed by us or by the header deadline; then requests work again.
    with httpx.Client(timeout=10) as client:
        assert client.get(server.url + "/healthz").status_code == 200


def test_kept_alive_connections_serve_several_requests(server: LiveServer) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(3):
            assert client.get(server.url + "/healthz").status_code == 200
            response = client.post(
                server.url + "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.status_code == 200
