"""Identical requests in flight share one upstream generation.

Tavus calls more than once per turn (a retry, plus speculative requests), and public
integrations were billed for each. A request with the same conversation id and byte-identical
body as one still in flight does not call the upstream: it receives the first request's events,
from the beginning, as they arrive.

For a request that could be shared (it has a conversation id), the upstream is read by a task
of its own that appends each event to a buffer, and the request reads the buffer; so does any
twin that joins. Whoever leaves — the first client or a twin — the others keep the whole
stream, because no client's cancellation ever lands inside the upstream read (Tavus drops the
older of two identical requests, mid-read, which is exactly when a twin needs the generation).
The task stops, closing the upstream, when the last reader leaves.

The buffer is bounded (issue 23: a client reading 16 KB every 100 ms let it grow to 3.1 GiB
while the upstream streamed fast). While it holds under `JOIN_WINDOW`, the whole reply is kept
so a twin can still join from the first event; past it, joining closes and what every reader
has read is dropped. However slow the slowest reader (or one that never starts), the task stops
reading the upstream when `MAX_BUFFER` is buffered ahead of it, so the upstream waits, as it
does for an unshared stream (TCP backpressure), until the call's deadlines end it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeAlias

from server.completion.control import RequestControl
from server.completion.record import CompletionRecord
from server.completion.reply_size import event_chars
from server.responders.base import ResponseEvent, close_events

Key: TypeAlias = tuple[str, bytes]


@dataclass(frozen=True)
class BufferLimit:
    events: int
    chars: int


# Twins arrive within a turn, while a voice reply is short: a few thousand events cover it.
JOIN_WINDOW = BufferLimit(events=4096, chars=256 * 1024)
MAX_BUFFER = BufferLimit(events=8192, chars=1024 * 1024)


class AbandonedError(Exception):
    """The generation was stopped because every request holding it had ended (nobody reads it
    any more; raised only to a reader that would still ask)."""


class SharedGeneration:
    def __init__(
        self,
        registry: SharedGenerations,
        key: Key,
        events: AsyncIterator[ResponseEvent],
        join_window: BufferLimit = JOIN_WINDOW,
        max_buffer: BufferLimit = MAX_BUFFER,
    ) -> None:
        self._registry = registry
        self._key = key
        self._join_window = join_window
        self._max_buffer = max_buffer
        self.events: list[ResponseEvent] = []  # from event number `self.first` on
        self.first = 0  # events before it were read by every reader and dropped
        self._chars = 0  # in `self.events`
        self.holders = 1  # requests that will read it: the first, then each twin that joins
        # Each holder's next event number, from when it joins (even before it reads) until it
        # leaves: nothing a holder has yet to read is dropped.
        self._positions: dict[int, int] = {}
        self.twins = 0
        self.ended = False
        self._error: BaseException | None = None
        self._changed = asyncio.Event()
        self._consumed = asyncio.Event()
        self._driver = asyncio.ensure_future(self._drive(events))  # the upstream starts now

    @property
    def joinable(self) -> bool:
        return not self.ended and self.first == 0

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _end(self, error: BaseException | None = None) -> None:
        if self.ended:
            return
        self.ended, self._error = True, error
        self._registry.forget(self._key, self)
        self._wake()

    def _full(self) -> bool:
        return len(self.events) >= self._max_buffer.events or self._chars >= self._max_buffer.chars

    async def _drive(self, events: AsyncIterator[ResponseEvent]) -> None:
        try:
            async for event in events:
                self.events.append(event)
                self._chars += event_chars(event)
                self._wake()
                while self._full():  # backpressure: the upstream waits for the slowest reader
                    self._consumed.clear()
                    await self._consumed.wait()
            self._end()
        except asyncio.CancelledError:
            self._end(AbandonedError())
            raise
        except Exception as error:
            self._end(error)
        finally:
            await close_events(events)

    def _advanced(self) -> None:
        """A reader moved on or left: drop what every reader has read, once the buffer is past
        the join window (a twin joining later would need the first events)."""
        over = len(self.events) > self._join_window.events or self._chars > self._join_window.chars
        if over:
            lowest = min(self._positions.values(), default=self.first + len(self.events))
            if lowest > self.first:
                dropped = self.events[: lowest - self.first]
                self._chars -= sum(event_chars(event) for event in dropped)
                del self.events[: lowest - self.first]
                self.first = lowest
        if not self._full():
            self._consumed.set()

    def join(self, control: RequestControl) -> None:
        """`control`'s request will read from the first event (called while joinable)."""
        self._positions.setdefault(id(control), self.first)

    def read(self, control: RequestControl) -> AsyncIterator[ResponseEvent]:
        """Every event from the first, waiting for new ones (a superseded or shut-down
        `control` stops the wait); the generation's error is raised at its end. The reader
        holds its place from this call, before its first read."""
        self.join(control)
        return self._read(control)

    async def _read(self, control: RequestControl) -> AsyncIterator[ResponseEvent]:
        reader = id(control)
        position = self._positions.get(reader, self.first)
        try:
            while True:
                while position < self.first + len(self.events):
                    position = max(position, self.first)  # released early: its place was given up
                    event = self.events[position - self.first]
                    position += 1
                    self._positions[reader] = position
                    yield event
                    self._advanced()
                if self.ended:
                    if self._error is not None:
                        raise self._error
                    return
                await control.wait(self._changed.wait(), None)
        finally:
            self._positions.pop(reader, None)
            self._advanced()

    def release(self, control: RequestControl) -> None:
        """A request holding the generation has ended (`Completion.finish`, once per request);
        after the last one, nobody will read it: stop the upstream."""
        self.holders -= 1
        self._positions.pop(id(control), None)  # whether or not it ever read
        self._advanced()
        if not self.holders and not self._driver.done():
            self._driver.cancel()


class SharedGenerations:
    """Generations in flight, by conversation id and body digest (per process)."""

    def __init__(self) -> None:
        self._live: dict[Key, SharedGeneration] = {}
        self.saved_calls = 0

    @staticmethod
    def key(conversation_id: str | None, body: bytes, *choices: str) -> Key | None:
        """What makes two requests twins: the conversation, the body, and anything else that
        chooses the reply (`choices`: the query string, the prompt-template header)."""
        if not conversation_id:
            return None  # without a conversation id, identical bodies may be different calls
        digest = hashlib.blake2b(body, digest_size=16)
        for choice in choices:
            digest.update(b"\0" + choice.encode("utf-8", "surrogatepass"))
        return conversation_id, digest.digest()

    def twin_of(self, key: Key | None) -> SharedGeneration | None:
        """The generation in flight for `key`, which the caller now holds; it must `join` it
        with its control before it next awaits."""
        generation = self._live.get(key) if key is not None else None
        if generation is None or not generation.joinable:
            return None
        generation.twins += 1
        generation.holders += 1
        return generation

    def begin(self, key: Key, events: AsyncIterator[ResponseEvent]) -> SharedGeneration:
        generation = self._live[key] = SharedGeneration(self, key, events)
        return generation

    def forget(self, key: Key, generation: SharedGeneration) -> None:
        if self._live.get(key) is generation:
            del self._live[key]

    def __len__(self) -> int:
        return len(self._live)


async def as_twin(
    generation: SharedGeneration, control: RequestControl, record: CompletionRecord
) -> AsyncIterator[ResponseEvent]:
    """A twin's events: the shared generation's, from its first event."""
    async for event in generation.read(control):
        record.shared = True  # the upstream call this request would have made was saved
        yield event
