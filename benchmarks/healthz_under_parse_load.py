"""`/healthz` latency while worst-case 4 MB bodies are being parsed (the server stays responsive).

Starts the server (offline responder, default settings) and keeps `--inflight` (default 8)
worst-case bodies in flight: each is a 4 MB request whose messages are the slowest shape of
benchmarks/adversarial_parse.py, sent non-streamed, back to back. Meanwhile `/healthz` is probed
every 10 ms on its own connection. Prints the probes' p50/p99/max and how the big requests ended.
Target: /healthz p99 under 50 ms.

Run: .venv/bin/python benchmarks/healthz_under_parse_load.py [--seconds 10] [--inflight 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter

import aiohttp
import quick
from processes import start

MESSAGE_CHARS = 200_000


def worst_body(total_bytes: int) -> bytes:
    text = ("<user_a>" * (MESSAGE_CHARS // 8 + 1))[:MESSAGE_CHARS]
    count = total_bytes // (MESSAGE_CHARS + 40)
    messages = [{"role": "user", "content": text} for _ in range(count)]
    messages.append({"role": "user", "content": "hi"})
    return json.dumps({"model": "echo", "messages": messages}).encode()


async def big_requests(url: str, body: bytes, until: float, outcomes: Counter[str]) -> None:
    headers = {"Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < until:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                outcomes[f"HTTP {response.status}"] += 1


async def probes(url: str, until: float, latencies: list[float]) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            started = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)


async def run(base: str, seconds: float, inflight: int, body: bytes) -> None:
    until = time.monotonic() + seconds
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    await asyncio.gather(
        probes(f"{base}/healthz", until, latencies),
        *(
            big_requests(f"{base}/v1/chat/completions", body, until, outcomes)
            for _ in range(inflight)
        ),
    )
    latencies.sort()
    ms = [value * 1000 for value in latencies]
    print(f"body: {len(body) / 1e6:.1f} MB x {inflight} in flight for {seconds:.0f} s")
    print(f"big requests: {dict(outcomes)}")
    print(
        f"/healthz probes: {len(ms)}, p50 {statistics.median(ms):.1f} ms, "
        f"p99 {ms[int(len(ms) * 0.99)]:.1f} ms, max {ms[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--megabytes", type=float, default=4)
    args = quick.parse_args(parser, seconds=1, inflight=2, megabytes=0.5)
    server, port = start(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
    )
    try:
        body = worst_body(int(args.megabytes * 1024 * 1024) - 1024)
        asyncio.run(run(f"http://127.0.0.1:{port}", args.seconds, args.inflight, body))
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
