"""Legitimate calls while hostile 4 MB bodies arrive back to back (issue 23, finding 6).

Before: 8 clients sending bodies of 120,000 tiny messages in a loop made load shedding refuse
every legitimate request (0 % success), and 2 clients sending 3.7 MB content-part arrays left
12 %. The server runs as the README starts it; `--hostile` clients (default 8) send the shape
back to back, while 4 legitimate clients make short streamed completions one after another.
Printed per shape: legitimate success, their latency, how the hostile requests ended.

Run: .venv/bin/python benchmarks/hostile_body_flood.py [--seconds 10] [--hostile 8]
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

LEGIT = {"model": "echo", "messages": [{"role": "user", "content": "hi there"}], "stream": True}
SHAPES = {
    "120,000 tiny messages": {
        "model": "echo",
        "messages": [{"role": "user", "content": "hi"}] * 115_000,
    },
    "3.7 MB content-part array": {
        "model": "echo",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * 115_000}],
    },
}


async def hostile(url: str, body: bytes, until: float, ended: Counter[str]) -> None:
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while time.monotonic() < until:
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ended[str(response.status)] += 1
            except Exception as error:
                ended[type(error).__name__] += 1


async def legitimate(url: str, until: float, ok: list[float], failed: Counter[str]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                async with session.post(url, json=LEGIT) as response:
                    text = await response.text()
                    if response.status == 200 and "[DONE]" in text:
                        ok.append(time.perf_counter() - started)
                    else:
                        failed[f"HTTP {response.status}"] += 1
            except Exception as error:
                failed[type(error).__name__] += 1


async def measure(url: str, body: bytes, seconds: float, clients: int) -> str:
    until = time.monotonic() + seconds
    ok: list[float] = []
    failed: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    await asyncio.gather(
        *(hostile(url, body, until, ended) for _ in range(clients)),
        *(legitimate(url, until, ok, failed) for _ in range(4)),
    )
    total = len(ok) + sum(failed.values())
    ms = sorted(x * 1000 for x in ok) or [float("nan")]
    return (
        f"legitimate {len(ok)}/{total} ok ({100 * len(ok) / max(total, 1):.1f} %), "
        f"p50 {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms, failures {dict(failed)}; "
        f"hostile requests ended {dict(ended)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--hostile", type=int, default=8)
    args = quick.parse_args(parser, seconds=2, hostile=2)
    server, port = start(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        for name, shape in SHAPES.items():
            body = json.dumps(shape, separators=(",", ":")).encode()
            result = asyncio.run(measure(url, body, args.seconds, args.hostile))
            print(f"{args.hostile} x {name} ({len(body) / 1e6:.1f} MB): {result}")
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
