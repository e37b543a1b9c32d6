"""Graceful shutdown: on SIGTERM, in-flight streams get a grace period, then end
with a finish chunk and `data: [DONE]`; nothing is cut mid-frame.

uvicorn already stops accepting and waits for open responses; it re-raises the captured signal
after shutting down, which the CLI turns into a clean exit with status 0.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from server.completion.control import ConversationRegistry

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_drain_on_signals(registry: ConversationRegistry, grace_seconds: float) -> None:
    """Chain a handler that starts the drain before the server's own signal handler.

    Called from the app's lifespan, after uvicorn has installed its handlers. Only possible in
    the main thread (a server run in a thread, as in tests, has no signals to catch).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in SHUTDOWN_SIGNALS:
        previous = signal.getsignal(signum)

        def handler(number: int, frame: FrameType | None, previous: Any = previous) -> None:
            # Signal handlers interrupt the loop between bytecodes: hand over thread-safely.
            loop.call_soon_threadsafe(registry.drain, grace_seconds)
            if callable(previous):
                previous(number, frame)

        signal.signal(signum, handler)


def exit_cleanly_on_signals() -> Callable[[], None]:
    """Make SIGTERM/SIGINT end the process with status 0 (see module docstring); returns a
    function restoring the previous handlers."""
    previous = {signum: signal.getsignal(signum) for signum in SHUTDOWN_SIGNALS}

    def leave(number: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    for signum in SHUTDOWN_SIGNALS:
        signal.signal(signum, leave)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore
