"""The shared generation's buffer is bounded (issue 23, finding 2): a slow reader makes the
upstream wait instead of the buffer growing without end (RSS 291 MiB -> 3.1 GiB in 20 s)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from server.completion.control import RequestControl
from server.completion.sharing import BufferLimit, SharedGeneration, SharedGenerations
from server.responders.base import ResponseEvent

JOIN = BufferLimit(events=8, chars=400)
MAX = BufferLimit(events=16, chars=800)


class FastUpstream:
    """An endless upstream that yields as fast as it is read, counting what it produced."""

    def __init__(self, text: str = "word ") -> None:
        self.produced = 0
        self.text = text

    async def events(self) -> AsyncIterator[ResponseEvent]:
        while True:
            self.produced += 1
            yield ResponseEvent(delta={"content": self.text})
            await asyncio.sleep(0)


async def settle() -> None:
    for _ in range(200):  # the driver runs as far as it may
        await asyncio.sleep(0)


def generation(upstream: FastUpstream) -> tuple[SharedGenerations, SharedGeneration]:
    registry = SharedGenerations()
    key = ("conversation", b"digest")
    shared = registry._live[key] = SharedGeneration(
        registry, key, upstream.events(), join_window=JOIN, max_buffer=MAX
    )
    return registry, shared


def test_a_slow_reader_makes_the_upstream_wait() -> None:
    async def scenario() -> None:
        upstream = FastUpstream()
        _, shared = generation(upstream)
        control = RequestControl("conversation")
        reader = shared.read(control)
        for _ in range(3):
            await anext(reader)
        await settle()
        assert upstream.produced <= MAX.events + 1  # stopped at the bound, not 10,000s ahead
        for _ in range(100):  # reading on lets it go on, one window at a time
            await anext(reader)
            assert len(shared.events) <= MAX.events
        await settle()
        assert upstream.produced <= 100 + MAX.events + 1
        await reader.aclose()
        shared.release(control)
        await settle()

    asyncio.run(scenario())


def test_big_events_are_bounded_by_characters() -> None:
    async def scenario() -> None:
        upstream = FastUpstream("x" * 100)
        _, shared = generation(upstream)
        control = RequestControl("conversation")
        reader = shared.read(control)
        await anext(reader)
        await settle()
        assert upstream.produced <= MAX.chars // 100 + 1
        await reader.aclose()
        shared.release(control)

    asyncio.run(scenario())


def test_a_holder_that_never_reads_also_holds_the_upstream() -> None:
    async def scenario() -> None:
        upstream = FastUpstream()
        _, shared = generation(upstream)
        control = RequestControl("conversation")
        shared.join(control)  # the first request holds it, and never reads
        await settle()
        assert upstream.produced <= MAX.events + 1
        shared.release(control)
        await settle()
        assert shared.ended

    asyncio.run(scenario())


def test_twins_join_from_the_first_event_until_the_join_window_is_passed() -> None:
    async def scenario() -> None:
        upstream = FastUpstream()
        registry, shared = generation(upstream)
        first_control, twin_control = RequestControl("c"), RequestControl("c")
        first = shared.read(first_control)
        await anext(first)
        assert registry.twin_of(("conversation", b"digest")) is shared  # within the window
        shared.join(twin_control)
        twin = shared.read(twin_control)
        assert (await anext(twin)) == shared.events[0]  # from the start
        for _ in range(40):
            await anext(first)
            await anext(twin)
        assert shared.first > 0  # read by both and dropped
        assert registry.twin_of(("conversation", b"digest")) is None  # joining has closed
        for reader in (first, twin):
            await reader.aclose()
        shared.release(first_control)
        shared.release(twin_control)

    asyncio.run(scenario())


def test_a_twin_that_leaves_without_reading_does_not_stall_the_others() -> None:
    # A holder that joined and left before reading must not keep the buffer from being
    # trimmed: the reader that stays reads on, however long the reply.
    async def scenario() -> None:
        upstream = FastUpstream()
        registry, shared = generation(upstream)
        control = RequestControl("c")
        reader = shared.read(control)
        await anext(reader)
        assert registry.twin_of(("conversation", b"digest")) is shared
        twin_control = RequestControl("c")
        shared.join(twin_control)
        shared.release(twin_control)  # it never reads
        for _ in range(200):
            await asyncio.wait_for(anext(reader), 5)
        assert len(shared.events) <= MAX.events
        await reader.aclose()
        shared.release(control)

    asyncio.run(scenario())
