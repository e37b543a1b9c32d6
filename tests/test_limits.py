"""Limits: body size (413, enforced while reading), messages, characters, tools (400), and
concurrent completions (429 with Retry-After, never an unbounded queue)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from server.completion.heavy_work import OFF_LOOP_BODY_BYTES
from tests.conftest import make_settings
from tests.fake_upstream import FakeUpstream, Reply, chunk
from tests.live import running_server

SMALL = dict(max_body_bytes=2048, max_messages=3, max_message_chars=50, max_tools=1)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running_server(make_settings(**SMALL)) as base:
        yield base


def post(url: str, body: object) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=10)


def raw_request(url: str, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a request by hand (to control Content-Length and chunking); the raw response."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for data in chunks:
                sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything: that is the point
        sock.shutdown(socket.SHUT_WR)
        response = b""
        while part := sock.recv(65536):
            response += part
    return response


def test_declared_oversized_body_is_refused_before_reading(url: str) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
        b"content-length: 10000000\r\n\r\n"
    )
    response = raw_request(url, head, [])  # nothing of the 10 MB body is ever sent
    assert response.startswith(b"HTTP/1.1 413")
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_too_large"


def test_chunked_oversized_body_is_cut_while_reading(url: str) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 1000
    chunks = [f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for _ in range(50)] + [b"0\r\n\r\n"]
    response = raw_request(url, head, chunks)
    assert response.startswith(b"HTTP/1.1 413")
    assert b"larger than 2048 bytes" in response


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": [{"role": "user", "content": "x"}] * 4}, "messages", "too_many_messages"),
        (
            {"messages": [{"role": "user", "content": "y" * 51}]},
            "messages.[0].content",
            "message_too_long",
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "ok"},
                    {"role": "user", "content": [{"type": "text", "text": "z" * 51}]},
                ]
            },
            "messages.[1].content",
            "message_too_long",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "a"}}] * 2,
            },
            "tools",
            "too_many_tools",
        ),
    ],
)
def test_count_and_size_limits_are_400s(
    url: str, body: dict[str, object], param: str, code: str
) -> None:
    response = post(url, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)


def test_within_limits_is_fine(url: str) -> None:
    assert post(url, {"messages": [{"role": "user", "content": "y" * 50}] * 3}).status_code == 200


SLOT_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@contextmanager
def one_slot_server(next_word: str) -> Iterator[tuple[str, FakeUpstream, Callable[[], None]]]:
    """A server with one completion slot, held by a stream that hangs after its first token.
    Yields the base URL, the upstream, and a function that abandons the holding stream (the
    next upstream reply is `next_word` and stop)."""
    with (
        FakeUpstream().serving() as fake,
        running_server(
            make_settings(upstream_base_url=fake.base_url, max_concurrent_streams=1)
        ) as base,
    ):
        fake.script = [
            Reply(steps=[("data", chunk({"content": "busy"})), ("hang", None)]),
            Reply(steps=[("data", chunk({"content": next_word})), ("data", chunk({}, "stop"))]),
        ]
        client = httpx.Client(timeout=10)
        first = client.send(
            client.build_request("POST", base + "/v1/chat/completions", json=SLOT_BODY),
            stream=True,
        )
        lines = first.iter_lines()  # kept: a collected iterator would close the stream
        assert next(line for line in lines if line.startswith("data: {"))

        def abandon() -> None:
            first.close()
            client.close()
            assert fake.received[0].gone.wait(2)

        yield base, fake, abandon


def test_concurrency_cap_is_a_429_with_retry_after_and_frees_up() -> None:
    with one_slot_server("free") as (base, _, abandon):
        refused = httpx.post(base + "/v1/chat/completions", json=SLOT_BODY, timeout=10)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "too_many_concurrent_streams"
        abandon()
        # The slot is free again once the abandoned stream has been cleaned up.
        again = httpx.post(
            base + "/v1/chat/completions", json={**SLOT_BODY, "stream": False}, timeout=10
        )
        assert (
            again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == "free"
        )


def test_slot_is_taken_before_the_body_is_parsed_and_large_bodies_still_work() -> None:
    """A request past the cap is refused before any parsing (its invalid JSON is never read),
    and a body large enough to be prepared off the event loop completes normally."""
    with one_slot_server("big") as (base, _, abandon):
        garbage = b"{" + b"x" * (OFF_LOOP_BODY_BYTES + 1)
        refused = httpx.post(
            base + "/v1/chat/completions",
            content=garbage,
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert refused.status_code == 429, refused.text
        abandon()
        turns = [{"role": "user", "content": "<user_a>" * 10_000}] * 4
        large = {"model": "m", "messages": [*turns, {"role": "user", "content": "hi"}]}
        assert len(json.dumps(large)) > OFF_LOOP_BODY_BYTES
        answer = httpx.post(base + "/v1/chat/completions", json=large, timeout=30)
        assert (
            answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "big"
        )


def test_a_lagging_loop_refuses_new_completions_but_never_the_first() -> None:
    from server.http.limits import ConcurrencyGate, LoopLagMonitor

    monitor = LoopLagMonitor(limit=0.1)
    gate = ConcurrencyGate(limit=10, lag=monitor)
    monitor.lag = 0.5  # the loop is half a second behind
    assert gate.refusal() is None  # nothing in flight: the first request is always served
    gate.enter()
    refusal = gate.refusal()
    assert refusal is not None and refusal.code == "server_overloaded"
    assert refusal.headers == {"Retry-After": "1"}
    monitor.lag = 0.01  # caught up
    assert gate.refusal() is None


def test_the_loop_lag_monitor_measures_a_blocked_loop() -> None:
    import asyncio
    import time

    from server.http.limits import LoopLagMonitor

    async def blocked() -> float:
        monitor = LoopLagMonitor(limit=0.1, interval=0.01)
        monitor.start()
        await asyncio.sleep(0.02)
        busy_until = time.monotonic() + 0.3
        while time.monotonic() < busy_until:  # the behaviour under test: CPU work holds the loop
            pass
        await asyncio.sleep(0.015)  # one tick: it fires 0.3 s late
        monitor.stop()
        return monitor.lag

    assert asyncio.run(blocked()) > 0.05  # smoothed: 0.3 of the 0.3 s spike after one tick


LIMITED_ROUTES = ["/v1/chat/completions", "/v1/perception/parse", "/v1/prompts/render"]


@pytest.fixture(scope="module")
def default_url() -> Iterator[str]:
    with running_server(make_settings()) as base:
        yield base


@pytest.mark.parametrize("path", LIMITED_ROUTES)
def test_every_route_that_parses_messages_has_the_message_limits(
    default_url: str, path: str
) -> None:
    # Issue 23, finding 6: the parse and render routes had no limits at all.
    too_many = [{"role": "user", "content": "hi"}] * 2001
    answer = httpx.post(
        default_url + path, json={"model": "echo", "messages": too_many}, timeout=30
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "too_many_messages"


@pytest.mark.parametrize("path", [*LIMITED_ROUTES, "/v1/playground/encode"])
def test_a_body_of_tiny_objects_is_refused_before_it_is_decoded(
    default_url: str, path: str
) -> None:
    # 120,000 tiny messages held the loop 580 ms before the 400 (decoding and validation hold
    # the GIL even in a thread); now the objects are counted first.
    tiny = [{"role": "user", "content": "hi"}] * 60_000
    body = json.dumps({"model": "echo", "messages": tiny}, separators=(",", ":")).encode()
    answer = httpx.post(
        default_url + path, content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "too_many_objects"


@pytest.mark.parametrize(
    ("text", "objects"),
    [
        ('{"a":{"b":{}}}', 3),
        ('{"a":"{{{{"}', 1),
        ('{"a":"\\"{{","b":{}}', 2),
        ('{"a":"\\\\","b":{}}', 2),  # an escaped backslash ends before the quote
        ('{"a":"\\\\\\"{"}', 1),
        ('{"a":"unterminated {{{{', 1),
    ],
)
def test_objects_are_counted_outside_strings(text: str, objects: int) -> None:
    from server.errors import InvalidRequestError
    from server.http.body import check_json_object_count

    with pytest.raises(InvalidRequestError):
        check_json_object_count(text.encode(), limit=objects - 1)
    check_json_object_count(text.encode(), limit=objects)
