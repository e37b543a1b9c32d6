"""Full garbage collections run between completions, not inside one (issue 24's tail).

The ticker's decision is called directly (`tick()`): what it collects is seen through a weak
reference to a cycle that only a full collection frees."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from server.app import create_app
from server.http import idle_collection
from server.http.idle_collection import OFF, IdleCollector
from server.settings import Settings


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle_in_generation_2() -> weakref.ref[Node]:
    """A garbage cycle that survived the young collections: only a full one frees it."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    ref = weakref.ref(first)
    gc.collect(1)  # alive: promoted into generation 2
    del first, second
    gc.collect(1)  # a young collection leaves it there
    assert ref() is not None
    return ref


@pytest.fixture
def collector() -> Iterator[IdleCollector]:
    made = IdleCollector(busy=lambda: False)
    before = gc.get_threshold()
    gc.disable()  # the test decides when young collections run
    try:
        gc.set_threshold(before[0], before[1], OFF)
        made._size_after = len(gc.get_objects(2))
        yield made
    finally:
        gc.enable()
        gc.set_threshold(*before)


def grow_generation_2(count: int) -> list[object]:
    kept = [Node() for _ in range(count)]
    for _ in range(idle_collection.YOUNG_COLLECTIONS):
        gc.collect(1)
    return kept


def test_a_full_collection_waits_for_no_completion_in_flight(collector: IdleCollector) -> None:
    ref = cycle_in_generation_2()
    kept = grow_generation_2(len(gc.get_objects(2)))  # generation 2 doubled: a full one is due
    collector.busy = lambda: True
    assert not collector.tick()
    assert ref() is not None
    collector.busy = lambda: False
    assert collector.tick()
    assert ref() is None
    assert collector.collections == 1
    del kept


def test_no_full_collection_until_generation_2_has_grown(collector: IdleCollector) -> None:
    grow_generation_2(0)
    assert not collector.tick()  # young collections happened, but nothing was promoted
    assert collector.collections == 0


def test_a_busy_server_still_collects_past_the_backstop_once_grown(
    collector: IdleCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = cycle_in_generation_2()
    grow_generation_2(0)
    collector.busy = lambda: True
    monkeypatch.setattr(idle_collection, "BACKSTOP_SECONDS", 0.0)
    assert not collector.tick()  # overdue, but nothing grew: wait for an idle moment
    kept = grow_generation_2(len(gc.get_objects(2)))
    assert collector.tick()
    assert ref() is None
    del kept


def test_an_idle_server_collects_past_the_backstop_without_growth(
    collector: IdleCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = cycle_in_generation_2()
    grow_generation_2(0)
    monkeypatch.setattr(idle_collection, "BACKSTOP_SECONDS", 0.0)
    assert collector.tick()
    assert ref() is None


def test_the_app_turns_automatic_full_collections_off_while_it_serves() -> None:
    before = gc.get_threshold()
    app = create_app(Settings(upstream_base_url=None))

    async def serve() -> tuple[int, int, int]:
        async with app.router.lifespan_context(app):
            assert isinstance(app.state.idle_collector, IdleCollector)
            return gc.get_threshold()

    during = asyncio.run(serve())
    assert during[2] == OFF
    assert during[:2] == before[:2]
    assert gc.get_threshold() == before  # given back at shutdown


def test_two_apps_serving_at_once_give_the_setting_back_when_the_last_stops() -> None:
    before = gc.get_threshold()
    first, second = IdleCollector(busy=lambda: False), IdleCollector(busy=lambda: False)

    async def overlap() -> None:
        first.start()
        second.start()
        first.stop()
        assert gc.get_threshold()[2] == OFF  # the second still serves
        second.stop()

    asyncio.run(overlap())
    assert gc.get_threshold() == before
