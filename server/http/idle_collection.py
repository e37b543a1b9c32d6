"""Full garbage collections while no completion is in flight, not in the middle of one.

CPython starts a full (generation 2) collection by itself once enough objects have been promoted
into generation 2, and walks every tracked object there holding the GIL, inside whatever request
is running. `gc.freeze()` after start-up takes the modules and settings out of that walk, but
what is cached later stays in it: the perception caches (three 2,048-entry LRU caches) hold ~15k
tracked objects once full, and a full collection then cost 7-9 ms of CPU (10-33 ms of wall time
on a loaded machine) about once per 150 requests at one stream (issue 24's tail; the evidence is
in benchmarks/results/tail.md). Before the freeze it walked ~65k objects: ~24 ms of CPU.

So the automatic full collection is switched off (its threshold set out of reach; the young
generations are collected as before) and this ticker does it instead, when no completion is in
flight and generation 2 has grown by a quarter since the last one (CPython's own rule, measured
on the live objects), or `BACKSTOP_SECONDS` have passed. A server that is never idle still
collects: once generation 2 has grown and `BACKSTOP_SECONDS` have passed, the ticker collects
whatever is in flight, as CPython would have done. "In flight" is the completion slot, taken
after the body is read: a collection can still meet a request between its read and its slot.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

# A full collection is not worth a walk before generation 1 has been collected this often since
# the last one (CPython's own default threshold for generation 2).
YOUNG_COLLECTIONS = 10
GROWTH = 1.25  # generation 2 grown by a quarter: CPython's rule for when a full one pays
MIN_GROWTH_OBJECTS = 1000
BACKSTOP_SECONDS = 60.0
OFF = 1_000_000_000  # a generation-2 threshold the count never reaches
# The thresholds are the process's: with several apps serving at once (tests, embedding), the
# first to start saves CPython's setting and the last to stop restores it.
_RUNNING: set[IdleCollector] = set()
_SAVED: list[int] = []


class IdleCollector:
    """Runs full collections from a 1 s ticker while `busy()` is false (see the module doc)."""

    def __init__(self, busy: Callable[[], bool], interval: float = 1.0) -> None:
        self.busy = busy
        self.interval = interval
        self.collections = 0  # full collections run by this ticker (read by tests)
        self._size_after = 0  # generation 2's size after the last full collection
        self._last = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._measured_at = -1  # generation 1's collection count when generation 2 was measured

    def start(self) -> None:
        """Switch CPython's automatic full collections off and start ticking (in the loop)."""
        if not _RUNNING:  # the first of the process's apps keeps CPython's own setting
            _SAVED[:] = gc.get_threshold()
            young, middle, _ = _SAVED
            gc.set_threshold(young, middle, OFF)
        _RUNNING.add(self)
        self._size_after = len(gc.get_objects(2))
        self._last = time.monotonic()
        self._schedule()

    def stop(self) -> None:
        """Stop ticking and give CPython its automatic full collections back."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self in _RUNNING:
            _RUNNING.discard(self)
            if not _RUNNING:  # the last one gives it back
                gc.set_threshold(*_SAVED)

    def _schedule(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self.tick()
        self._schedule()

    def tick(self) -> bool:
        """Collect now if it is due; True when a full collection ran."""
        if gc.get_count()[2] < YOUNG_COLLECTIONS:
            return False
        overdue = time.monotonic() - self._last >= BACKSTOP_SECONDS
        busy = self.busy()
        if busy and not overdue:
            return False
        young = gc.get_count()[2]
        if young == self._measured_at and not overdue:
            return False  # nothing promoted since the last look: no walk of generation 2
        self._measured_at = young
        size = len(gc.get_objects(2))
        grown = size >= max(self._size_after * GROWTH, self._size_after + MIN_GROWTH_OBJECTS)
        # Idle: whenever it is due. Busy: only when it is due by both rules, so a server that
        # is rarely idle still collects, but one that idles between calls never does it in one.
        if not (grown and overdue if busy else grown or overdue):
            return False
        gc.collect(2)
        self.collections += 1
        self._size_after = len(gc.get_objects(2))
        self._last = time.monotonic()
        return True
