"""How a completion ended: one type, owned by the completion record (`record.py`)."""

from __future__ import annotations

import asyncio
from enum import StrEnum

from server.errors import ShutdownError, SupersededError


class Outcome(StrEnum):
    """How a completion ended: the one list (the metric label, the log field, the README)."""

    COMPLETED = "completed"  # the reply was delivered in full
    CANCELLED = "cancelled"  # the client left first (an abandoned speculative request)
    SUPERSEDED = "superseded"  # a newer request for the same conversation took over
    FALLBACK = "fallback"  # the upstream failed before the first token; the fallback was spoken
    FAILED = "failed"  # an error reached the client
    SHUTDOWN = "shutdown"  # the shutdown grace period ended the reply early

    @classmethod
    def for_error(cls, error: BaseException) -> Outcome:
        if isinstance(error, SupersededError):
            return cls.SUPERSEDED
        if isinstance(error, ShutdownError):
            return cls.SHUTDOWN
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            return cls.CANCELLED
        return cls.FAILED
