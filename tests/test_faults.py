"""Upstream faults end in a defined outcome for the client and leak nothing.

Each fault runs several times against a live server in front of the loopback fake upstream
(refusing connections, never answering, sending garbage, closing mid-stream, dribbling slowly).
Afterwards the server's event loop holds exactly the tasks it held before, no completion is
still counted in flight, and the upstream sees no connection left open but the pooled one.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest

from server.services import services
from tests.conftest import make_settings
from tests.fake_upstream import FakeUpstream, Reply, chunk, text_reply
from tests.live import LiveServer, live_server
from tests.streams import BODY, stream, text_of

FALLBACK = "One moment please."
REPEATS = 5


def task_count(server: LiveServer, at_most: int = 0, tries: int = 2000) -> int:
    """Tasks on the server's loop (this probe excluded), once at most `at_most` remain or the
    loop has had 2 s to wind down what just finished: a condition wait, not a fixed sleep."""

    async def count() -> int:
        lowest = len(asyncio.all_tasks()) - 1
        for _ in range(tries):
            if lowest <= at_most:
                break
            await asyncio.sleep(0.001)
            lowest = min(lowest, len(asyncio.all_tasks()) - 1)
        return lowest

    loop = services(server.app).loop
    assert loop is not None
    return asyncio.run_coroutine_threadsafe(count(), loop).result(10)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream().serving() as upstream:
        yield upstream


@pytest.fixture
def server(fake: FakeUpstream) -> Iterator[LiveServer]:
    settings = make_settings(
        upstream_base_url=fake.base_url,
        fallback_text=FALLBACK,
        first_token_timeout_seconds=0.5,
        idle_timeout_seconds=0.5,
    )
    with live_server(settings) as live:
        fake.script = [text_reply("warm")]
        stream(live.url)  # warm up: the pooled upstream connection
        yield live


def assert_nothing_leaked(server: LiveServer, fake: FakeUpstream, baseline: int) -> None:
    fake.script = [text_reply("settle")]
    assert text_of(stream(server.url)) == "settle"  # sequential: earlier cleanups have run
    assert task_count(server, at_most=baseline) == baseline
    assert services(server.app).gate.active == 0
    assert len(services(server.app).conversations._all) == 0
    assert fake.open_connections <= 1  # the pooled one, reused by the next request


CASES = {
    "never-answers": ([Reply(steps=[("hang", None)])], lambda p: text_of(p) == FALLBACK),
    "garbage-before-first-token": (
        [Reply(steps=[("raw", b"data: {{{ not json\n\n")])],
        lambda p: text_of(p) == FALLBACK,
    ),
    "garbage-after-first-token": (
        [Reply(steps=[("data", chunk({"content": "par"})), ("raw", b"data: nope\n\n")])],
        lambda p: text_of(p) == "par" and "malformed" in p[-1]["error"]["message"],
    ),
    "closes-mid-stream": (
        [Reply(steps=[("data", chunk({"content": "par"})), ("drop", None)])],
        lambda p: text_of(p) == "par" and "lost" in p[-1]["error"]["message"],
    ),
    "very-slow-chunks": (
        [text_reply("s", "l", "o", "w", gap=0.3)],
        lambda p: text_of(p) == "slow" and p[-1]["choices"][0]["finish_reason"] == "stop",
    ),
    "too-slow-chunks": (
        [text_reply("s", "l", gap=0.9)],
        lambda p: text_of(p) == "s" and "quiet" in p[-1]["error"]["message"],
    ),
    "http-500": ([Reply(status=500)], lambda p: text_of(p) == FALLBACK),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fault_has_a_defined_outcome_and_leaks_nothing(
    server: LiveServer, fake: FakeUpstream, case: str
) -> None:
    script, outcome = CASES[case]
    baseline = task_count(server, tries=100)
    for _ in range(REPEATS):
        fake.script = list(script)
        assert outcome(stream(server.url)), case
    assert_nothing_leaked(server, fake, baseline)


def test_refused_connections_have_a_defined_outcome_and_leak_nothing() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    settings = make_settings(
        upstream_base_url=f"http://127.0.0.1:{port}/v1", fallback_text=FALLBACK
    )
    with live_server(settings) as server:
        stream(server.url)
        baseline = task_count(server, tries=100)
        for _ in range(REPEATS):
            assert text_of(stream(server.url)) == FALLBACK
            response = httpx.post(
                server.url + "/v1/chat/completions",
                json={**BODY, "prompt": "default", "stream": False},
                timeout=20,
            )
            assert response.status_code == 502
        stream(server.url)
        assert task_count(server, at_most=baseline) == baseline
        assert services(server.app).gate.active == 0


def test_abandoned_streams_leak_nothing(server: LiveServer, fake: FakeUpstream) -> None:
    baseline = task_count(server, tries=100)
    for _ in range(REPEATS):
        fake.script = [Reply(steps=[("data", chunk({"content": "a"})), ("hang", None)])]
        count = len(fake.received)
        with httpx.stream(
            "POST", server.url + "/v1/chat/completions", json={**BODY, "stream": True}, timeout=20
        ) as response:
            next(line for line in response.iter_lines() if line.startswith("data: {"))
        assert fake.wait_for_requests(count + 1).gone.wait(2)
    assert_nothing_leaked(server, fake, baseline)
