"""An upstream that floods: how fast the server stops it, and whether deadlines still hold.

In process, on loopback: the scripted fake upstream (tests/fake_upstream.py) and the server.
1. `--clients` (default 20) clients each read the first token of a stream whose upstream then
   sends content as fast as it can (4 KB frames), and hang up. Printed: the time from each
   hang-up to the upstream seeing its connection closed (target: under 100 ms) and the bytes
   the upstream managed to send.
2. An upstream floods `: keep-alive` comments, then blank lines, before the first token and after
   it; printed: when the fallback line or the "went quiet" error reached the client, against
   the deadline (target: within 0.5 s of it), and /healthz during the flood.

Run: .venv/bin/python benchmarks/hostile_upstream.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from typing import Any

import httpx
import quick
from processes import ROOT

sys.path.insert(0, str(ROOT))  # the fake upstream and the in-process server helpers

from server.settings import Settings
from tests.fake_upstream import FakeUpstream, Reply, chunk
from tests.live import live_server


def make_settings(**overrides: Any) -> Settings:
    """Settings isolated from the environment (as the tests' own helper, without pytest)."""
    defaults = {"max_loop_lag_seconds": 2.0, "upstream_check": False}
    return Settings(_env_file=None, **{**defaults, **overrides})  # type: ignore[call-arg]


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def hang_up_after_first_token(url: str, fake: FakeUpstream, results: list[float]) -> None:
    count = len(fake.received)
    with httpx.stream("POST", url + "/v1/chat/completions", json=BODY, timeout=10) as response:
        next(line for line in response.iter_lines() if line.startswith("data: {"))
        hung_up = time.monotonic()
    request = fake.wait_for_requests(count + 1)
    if request.gone.wait(10) and request.gone_at is not None:
        results.append(request.gone_at - hung_up)
    else:
        results.append(float("inf"))


def disconnects(clients: int) -> None:
    frame = b"data: " + json.dumps(chunk({"content": "x" * 4000})).encode() + b"\n\n"
    with (
        FakeUpstream().serving() as fake,
        live_server(make_settings(upstream_base_url=fake.base_url)) as server,
    ):
        fake.script = [Reply(steps=[("data", chunk({"content": "go"})), ("flood", frame)])]
        results: list[float] = []
        for _ in range(clients):  # one at a time: each measurement is one hang-up
            hang_up_after_first_token(server.url, fake, results)
        sent = sum(r.flooded_bytes for r in fake.received)
    ms = sorted(r * 1000 for r in results)
    print(
        f"hang-up → upstream closed, {clients} clients: p50 {statistics.median(ms):.1f} ms, "
        f"max {ms[-1]:.1f} ms (target < 100); upstream sent {sent / 1e6:.1f} MB in all"
    )


def deadline_case(
    name: str, steps: list[tuple[str, Any]], deadline: float, settings: dict[str, Any]
) -> None:
    with (
        FakeUpstream().serving() as fake,
        live_server(make_settings(upstream_base_url=fake.base_url, **settings)) as server,
    ):
        fake.script = [Reply(steps=steps)]
        health: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                httpx.get(server.url + "/healthz", timeout=10)
                health.append(time.perf_counter() - started)
                time.sleep(0.05)

        prober = threading.Thread(target=probe)
        started = time.monotonic()
        prober.start()
        with httpx.stream(
            "POST", server.url + "/v1/chat/completions", json=BODY, timeout=30
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and ('"error"' in line or "again" in line):
                    ended = time.monotonic() - started
                    break
            else:
                ended = time.monotonic() - started
        stop.set()
        prober.join()
    worst = max(health) * 1000 if health else float("nan")
    print(
        f"{name}: ended after {ended:.2f} s against a {deadline:g} s deadline "
        f"(late by {ended - deadline:+.2f} s); /healthz worst {worst:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--deadline", type=float, default=2.0, help="deadlines of the floods (s)")
    args = quick.parse_args(parser, clients=3, deadline=0.5)
    disconnects(args.clients)
    limit = args.deadline
    first = {"first_token_timeout_seconds": limit, "idle_timeout_seconds": limit}
    token = [("data", chunk({"content": "a"}))]
    deadline_case("comments before the first token", [("flood", b": keep-alive\n\n")], limit, first)
    deadline_case("blank lines before the first token", [("flood", b"\n")], limit, first)
    deadline_case(
        "comments after the first token", [*token, ("flood", b": keep-alive\n\n")], limit, first
    )
    deadline_case("blank lines after the first token", [*token, ("flood", b"\n")], limit, first)


if __name__ == "__main__":
    main()
