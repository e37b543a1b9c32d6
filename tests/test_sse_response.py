"""The stream's writer is sse-starlette's response, configured for OpenAI, written through
`ResponseEdges` (issue 24). Over real sockets, keep-alives, disconnects, deadlines and the
fallback header are tested in test_upstream_relay.py, test_hostile_upstream.py,
test_fallback_marker.py and test_connection_guards.py; here the pieces, each alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse
from sse_starlette.event import ensure_bytes
from starlette.types import Message

from server.wire.sse import DONE_FRAME, KEEPALIVE_FRAME
from server.wire.sse_response import BURST_FRAMES, ResponseEdges, event_stream

START: Message = {"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]}


def body(data: bytes, more: bool = True) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


class Wire:
    """The ASGI send of a server, recording what reached it."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator


def test_the_stock_response_is_configured_for_openai_frames() -> None:
    response = event_stream(_nothing(), keepalive=5, send_timeout=10, shutdown_grace=3)
    assert isinstance(response, EventSourceResponse)
    assert response.ping_interval == 5 and response.send_timeout == 10
    assert response.sep == "\n"
    assert response.ping_message_factory is not None
    # The keep-alive on the wire is the one server/wire/sse.py spells (ResponseEdges drops it
    # after [DONE] by its bytes).
    assert ensure_bytes(response.ping_message_factory(), response.sep) == KEEPALIVE_FRAME
    headers = dict(response.raw_headers)
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"] == b"no-cache" and headers[b"x-accel-buffering"] == b"no"
    assert b"content-length" not in headers


def test_the_status_line_waits_for_the_first_body_and_takes_the_late_headers() -> None:
    wire = Wire()
    fallback: list[tuple[bytes, bytes]] = []
    edges = ResponseEdges(wire.send, send_timeout=5, late_headers=lambda: list(fallback))

    async def run() -> None:
        await edges.send(START)
        assert wire.sent == []  # held: the fallback is not known yet
        fallback.append((b"x-perception-llm-fallback", b"upstream timeout"))
        await edges.send(body(b"data: 1\n\n"))

    asyncio.run(run())
    assert [m["type"] for m in wire.sent] == ["http.response.start", "http.response.body"]
    assert wire.sent[0]["headers"] == [
        (b"a", b"1"),
        (b"x-perception-llm-fallback", b"upstream timeout"),
    ]
    assert wire.sent[0]["status"] == 200


def test_a_keepalive_and_the_first_frame_racing_send_the_status_line_once() -> None:
    wire = Wire()
    edges = ResponseEdges(wire.send, send_timeout=5)

    async def run() -> None:
        await edges.send(START)
        await asyncio.gather(edges.send(body(KEEPALIVE_FRAME)), edges.send(body(b"data: 1\n\n")))

    asyncio.run(run())
    types = [m["type"] for m in wire.sent]
    assert types == ["http.response.start", "http.response.body", "http.response.body"]


def test_the_end_waits_for_the_owner() -> None:
    wire = Wire()
    edges = ResponseEdges(wire.send, send_timeout=5)

    async def run() -> list[Message]:
        await edges.send(START)
        await edges.send(body(DONE_FRAME))
        await edges.send(body(b"", more=False))
        before_end = list(wire.sent)
        await edges.end()
        await edges.end()  # once only
        return before_end

    before_end = asyncio.run(run())
    assert [m["type"] for m in before_end] == ["http.response.start"]  # [DONE] waited too
    assert wire.sent[-1] == body(DONE_FRAME, more=False) and len(wire.sent) == 2


def test_a_whole_json_reply_is_held_as_the_end() -> None:
    wire = Wire()
    edges = ResponseEdges(wire.send, send_timeout=5)

    async def run() -> int:
        await edges.send(START)
        await edges.send({"type": "http.response.body", "body": b"{}"})  # more_body absent
        held = len(wire.sent)
        await edges.end()
        return held

    assert asyncio.run(run()) == 1  # the status line went out, the body waited
    assert wire.sent[-1]["body"] == b"{}"


def test_nothing_but_the_end_follows_done() -> None:
    """A keep-alive racing the end would land before the held [DONE]: it is dropped."""
    wire = Wire()
    edges = ResponseEdges(wire.send, send_timeout=5)

    async def run() -> None:
        await edges.send(START)
        await edges.send(body(KEEPALIVE_FRAME))  # while the model thinks: kept
        await edges.send(body(DONE_FRAME))
        await edges.send(body(KEEPALIVE_FRAME))  # after [DONE]: dropped
        await edges.send(body(b"", more=False))
        await edges.end()

    asyncio.run(run())
    bodies = [m["body"] for m in wire.sent[1:]]
    assert bodies == [KEEPALIVE_FRAME, DONE_FRAME]


def test_a_burst_turns_the_loop() -> None:
    """Without the turn, a client that left is noticed only after the whole burst."""
    wire = Wire()
    edges = ResponseEdges(wire.send, send_timeout=5)
    turns = 0
    during = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    async def run() -> None:
        counter = asyncio.ensure_future(count_turns())
        await asyncio.sleep(0)  # the counter is waiting on the loop
        await edges.send(START)
        before = turns
        for n in range(BURST_FRAMES * 3):
            await edges.send(body(b"data: %d\n\n" % n))
        nonlocal during
        during = turns - before
        counter.cancel()

    asyncio.run(run())
    assert during == 3  # one turn per BURST_FRAMES frames


def test_a_client_that_stops_reading_at_the_end_is_dropped_after_the_deadline() -> None:
    class Stuck(Wire):
        async def send(self, message: Message) -> None:
            if not message.get("more_body", True) and message["type"] == "http.response.body":
                await asyncio.Event().wait()  # never returns: a full socket buffer
            self.sent.append(message)

    wire = Stuck()
    edges = ResponseEdges(wire.send, send_timeout=0.01)

    async def run() -> None:
        await edges.send(START)
        await edges.send(body(b"", more=False))
        await edges.end()  # returns (logged), never hangs

    asyncio.run(run())
    assert [m["type"] for m in wire.sent] == ["http.response.start"]
