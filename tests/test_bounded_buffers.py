"""Every buffer between the upstream and a client is bounded (issue 23, findings 2 and 3), shown
against a loopback upstream that streams as fast as it is read, forever."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from server.services import services
from tests.conftest import make_settings
from tests.fake_upstream import FakeUpstream, Reply, chunk
from tests.live import live_server
from tests.streams import BODY

FRAME = b"data: " + json.dumps(chunk({"content": "x" * 100})).encode() + b"\n\n"


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream().serving() as upstream:
        yield upstream


def test_a_non_streamed_reply_past_the_cap_ends_with_502(fake: FakeUpstream) -> None:
    # Before: RSS 86 MiB -> 1.7 GiB in 10 s, then 504 at the deadline.
    fake.script = [Reply(steps=[("data", chunk({"content": "go"})), ("flood", FRAME)])]
    settings = make_settings(upstream_base_url=fake.base_url, max_reply_chars=200_000)
    with live_server(settings) as server:
        answer = httpx.post(
            server.url + "/v1/chat/completions", json={**BODY, "stream": False}, timeout=30
        )
        assert answer.status_code == 502
        assert "PERCEPTION_LLM_MAX_REPLY_CHARS" in answer.json()["error"]["message"]
        request = fake.wait_for_requests(1)
        assert request.gone.wait(5)  # the upstream was closed, not read on
        assert request.flooded_bytes < 50 * 1024 * 1024


def test_a_slow_reader_of_a_shared_generation_makes_the_upstream_wait(
    fake: FakeUpstream,
) -> None:
    # Before: with a conversation id, a client reading slowly let the shared buffer take every
    # byte the upstream pushed (3 GB in 20 s). Now the upstream is held back as for any stream.
    fake.script = [Reply(steps=[("data", chunk({"content": "go"})), ("flood", FRAME)])]
    with live_server(make_settings(upstream_base_url=fake.base_url)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        body = json.dumps({**BODY, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                b"content-type: application/json\r\nconversation-id: c-slow\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            assert sock.recv(12) == b"HTTP/1.1 200"
            request = fake.wait_for_requests(1)
            pushed = []
            for _ in range(3):  # the client reads nothing more: the upstream must stall
                time.sleep(0.5)
                pushed.append(request.flooded_bytes)
            generations = list(services(server.app).shared._live.values())
            assert generations and len(generations[0].events) <= 8192
            assert pushed[-1] < 64 * 1024 * 1024, pushed  # bounded: not gigabytes
            assert pushed[-1] - pushed[-2] < 4 * 1024 * 1024, pushed  # and no longer growing
        assert request.gone.wait(10)
