"""Per-request control: deadlines, "newest wins" per conversation, and client disconnects.

Every wait on the response model goes through `RequestControl.wait`, which runs it under an
`asyncio.timeout` (the stdlib's cancel/uncancel machinery, so a deadline never leaks a stray
cancellation). A newer request for the same conversation supersedes the older one by moving
that timeout to "now": the older request stops at once, closes its upstream connection, and
ends with a `superseded` error. Nothing ever waits across a `yield`, so a deadline can only
interrupt our own wait, never the server writing to the socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from server.errors import APIError, ShutdownError, SupersededError

T = TypeVar("T")
CONVERSATION_HEADERS = ("conversation-id", "conversation_id", "x-conversation-id")


def conversation_id_of(headers: Mapping[str, str]) -> str | None:
    return next((headers[h] for h in CONVERSATION_HEADERS if h in headers), None)


class RequestControl:
    """The cancellation state of one request."""

    def __init__(self, conversation_id: str | None = None) -> None:
        self.conversation_id = conversation_id
        self.superseded = False
        self.shutting_down = False
        self._timeout: asyncio.Timeout | None = None
        self.twins: list[RequestControl] = []  # identical requests sharing this one's reply
        self._shutdown_timer: asyncio.TimerHandle | None = None

    def _stopped(self) -> APIError | None:
        if self.superseded:
            return SupersededError()
        if self.shutting_down:
            return ShutdownError()
        return None

    async def wait(self, awaitable: Awaitable[T], deadline: float | None) -> T:
        """Await `awaitable` until the loop-time `deadline`; TimeoutError after it."""
        stopped = self._stopped()
        if stopped is not None:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # never started: no "was never awaited" warning
            raise stopped
        try:
            async with asyncio.timeout_at(deadline) as timeout:
                self._timeout = timeout
                return await awaitable
        except TimeoutError:
            stopped = self._stopped()
            if stopped is not None:
                raise stopped from None
            raise
        finally:
            self._timeout = None

    def _interrupt(self) -> None:
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())

    def supersede(self) -> None:
        self.superseded = True
        self._interrupt()
        for twin in self.twins:
            twin.supersede()

    def stop_at(self, deadline: float) -> None:
        """Let the request run until the loop-time `deadline` (shutdown grace), then stop it."""

        def stop() -> None:
            self.shutting_down = True
            self._interrupt()

        self._shutdown_timer = asyncio.get_running_loop().call_at(deadline, stop)

    def release(self) -> None:
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()


class ConversationRegistry:
    """In-flight requests, by conversation id for "newest wins", and all of them for the
    shutdown drain (per process; no state outlives a request)."""

    def __init__(self) -> None:
        self._inflight: dict[str, RequestControl] = {}
        self._all: set[RequestControl] = set()
        self.drain_deadline: float | None = None

    def drain(self, grace_seconds: float) -> None:
        """Shutdown: every request in flight, and any that still arrives, gets `grace_seconds`."""
        if self.drain_deadline is not None:
            return
        self.drain_deadline = asyncio.get_running_loop().time() + grace_seconds
        for control in self._all:
            control.stop_at(self.drain_deadline)

    def start(self, conversation_id: str | None, twin: bool = False) -> RequestControl:
        """Register a request; a newer one for the same conversation supersedes the older,
        except a `twin` (identical to the one in flight), which joins it instead."""
        control = RequestControl(conversation_id)
        self._all.add(control)
        if self.drain_deadline is not None:
            control.stop_at(self.drain_deadline)
        current = self._inflight.get(conversation_id) if conversation_id else None
        if twin and current is not None:
            current.twins.append(control)
        elif conversation_id:
            older = self._inflight.get(conversation_id)
            if older is not None:
                older.supersede()
            self._inflight[conversation_id] = control
        return control

    def finish(self, control: RequestControl) -> None:
        control.release()
        self._all.discard(control)
        conversation_id = control.conversation_id
        current = self._inflight.get(conversation_id) if conversation_id else None
        if conversation_id and current is control:
            if control.twins:  # the twins still stream: the oldest now stands for the call
                heir, *others = control.twins
                heir.twins.extend(others)
                self._inflight[conversation_id] = heir
            else:
                del self._inflight[conversation_id]
        elif current is not None and control in current.twins:
            current.twins.remove(control)

    def __len__(self) -> int:
        return len(self._inflight)
