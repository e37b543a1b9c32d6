"""Large bodies' CPU work runs in the one worker thread, behind a gate (issue 23, finding 6)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from server.app import create_app
from server.completion.heavy_work import MAX_WAITING, OFF_LOOP_BODY_BYTES, run_request_work
from server.errors import RateLimitError
from server.services import services
from tests.conftest import make_settings

LARGE = OFF_LOOP_BODY_BYTES + 1


def test_small_work_runs_on_the_loop_and_large_work_in_the_worker() -> None:
    app_services = services(create_app(make_settings()))

    async def scenario() -> tuple[str, str]:
        small = await run_request_work(10, app_services, lambda: threading.current_thread().name)
        large = await run_request_work(LARGE, app_services, lambda: threading.current_thread().name)
        return small, large

    small, large = asyncio.run(scenario())
    assert small == "MainThread" and large != "MainThread"


def test_past_the_waiting_limit_a_large_request_gets_429() -> None:
    app_services = services(create_app(make_settings()))
    release = threading.Event()

    async def scenario() -> None:
        busy = asyncio.ensure_future(run_request_work(LARGE, app_services, release.wait))
        waiting = [
            asyncio.ensure_future(run_request_work(LARGE, app_services, lambda: True))
            for _ in range(MAX_WAITING)
        ]
        limiter = app_services.prepare_limiter
        for _ in range(100):  # each task reaches the limiter within its first steps
            if limiter.statistics().tasks_waiting == MAX_WAITING:
                break
            await asyncio.sleep(0)
        with pytest.raises(RateLimitError) as refused:
            await run_request_work(LARGE, app_services, lambda: True)
        assert refused.value.code == "server_busy"
        assert await run_request_work(10, app_services, lambda: True)  # small: never gated
        release.set()
        assert all(await asyncio.gather(busy, *waiting))

    asyncio.run(scenario())
