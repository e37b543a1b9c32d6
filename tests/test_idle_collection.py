"""Full garbage collections run between completions, not inside one (issue 24's tail).

The ticker's decision is called directly (`tick()`), in a fresh interpreter: what it collects is
seen through a weak reference to a cycle that only a full collection frees."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from server.app import create_app
from server.http import idle_collection
from server.http.idle_collection import OFF, IdleCollector
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


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


class Isolated:
    """A collector with the automatic collections off, as the app runs it; the test decides
    when young collections run."""

    def __enter__(self) -> IdleCollector:
        self.before = gc.get_threshold()
        gc.disable()
        gc.set_threshold(self.before[0], self.before[1], OFF)
        made = IdleCollector(busy=lambda: False)
        made._size_after = len(gc.get_objects(2))
        return made

    def __exit__(self, *exc: object) -> None:
        gc.enable()
        gc.set_threshold(*self.before)


def grow_generation_2(count: int) -> list[object]:
    kept = [Node() for _ in range(count)]
    for _ in range(idle_collection.YOUNG_COLLECTIONS):
        gc.collect(1)
    return kept


def waits_for_no_completion_in_flight() -> None:
    with Isolated() as collector:
        ref = cycle_in_generation_2()
        kept = grow_generation_2(len(gc.get_objects(2)))  # generation 2 doubled: one is due
        collector.busy = lambda: True
        assert not collector.tick()
        assert ref() is not None
        collector.busy = lambda: False
        assert collector.tick()
        assert ref() is None
        assert collector.collections == 1
        del kept


def waits_until_generation_2_has_grown() -> None:
    with Isolated() as collector:
        grow_generation_2(0)
        assert not collector.tick()  # young collections happened, but nothing was promoted
        assert collector.collections == 0


def busy_collects_past_the_backstop_once_grown() -> None:
    with Isolated() as collector:
        idle_collection.BACKSTOP_SECONDS = 0.0
        ref = cycle_in_generation_2()
        grow_generation_2(0)
        collector.busy = lambda: True
        assert not collector.tick()  # overdue, but nothing grew: wait for an idle moment
        kept = grow_generation_2(len(gc.get_objects(2)))
        assert collector.tick()
        assert ref() is None
        del kept


def idle_collects_past_the_backstop_without_growth() -> None:
    with Isolated() as collector:
        idle_collection.BACKSTOP_SECONDS = 0.0
        ref = cycle_in_generation_2()
        grow_generation_2(0)
        assert collector.tick()
        assert ref() is None


@pytest.mark.parametrize(
    "scenario",
    [
        "waits_for_no_completion_in_flight",
        "waits_until_generation_2_has_grown",
        "busy_collects_past_the_backstop_once_grown",
        "idle_collects_past_the_backstop_without_growth",
    ],
)
def test_when_a_full_collection_runs(scenario: str) -> None:
    # In a fresh interpreter: the suite's in-process servers run their own collectors in other
    # threads, and one collecting at the wrong moment would decide for this one.
    done = subprocess.run(
        [sys.executable, "-c", f"import tests.test_idle_collection as t; t.{scenario}()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


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
