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

from server.errors import APIError

T = TypeVar("T")
CONVERSATION_HEADERS = ("conversation-id", "conversation_id", "x-conversation-id")


class SupersededError(APIError):
    status_code = 409
    error_type = "request_cancelled"

    def __init__(self) -> None:
        super().__init__(
            "Superseded by a newer request for the same conversation.", code="superseded"
        )


class RequestControl:
    """The cancellation state of one request."""

    def __init__(self, conversation_id: str | None = None) -> None:
        self.conversation_id = conversation_id
        self.superseded = False
        self._timeout: asyncio.Timeout | None = None

    async def wait(self, awaitable: Awaitable[T], deadline: float | None) -> T:
        """Await `awaitable` until the loop-time `deadline`; TimeoutError after it."""
        if self.superseded:
            raise SupersededError
        try:
            async with asyncio.timeout_at(deadline) as timeout:
                self._timeout = timeout
                return await awaitable
        except TimeoutError:
            if self.superseded:
                raise SupersededError from None
            raise
        finally:
            self._timeout = None

    def supersede(self) -> None:
        self.superseded = True
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())


class ConversationRegistry:
    """In-flight requests by conversation id (per process; no state outlives a request)."""

    def __init__(self) -> None:
        self._inflight: dict[str, RequestControl] = {}

    def start(self, headers: Mapping[str, str]) -> RequestControl:
        conversation_id = next((headers[h] for h in CONVERSATION_HEADERS if h in headers), None)
        control = RequestControl(conversation_id)
        if conversation_id:
            older = self._inflight.get(conversation_id)
            if older is not None:
                older.supersede()
            self._inflight[conversation_id] = control
        return control

    def finish(self, control: RequestControl) -> None:
        if control.conversation_id and self._inflight.get(control.conversation_id) is control:
            del self._inflight[control.conversation_id]

    def __len__(self) -> int:
        return len(self._inflight)
