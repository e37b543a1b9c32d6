"""`/healthz` latency while the server carries many concurrent streams (a load balancer's view).

Four processes on loopback: the fake upstream (20 tokens, 20 ms apart), the server, a load
generator with `--streams` (default 1,000) concurrent clients asking for streams back to back
(load_test.py's client, 30% abandoned after the first token; past the default cap of 256 in
flight they get 429 and ask again), and this prober, which asks `/healthz` every
20 ms on a fresh connection (as a load balancer does). Target: p99 under 250 ms.

Run: .venv/bin/python benchmarks/healthz_under_stream_load.py [--streams 1000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import aiohttp
import quick
from processes import ROOT, start


async def probe(url: str, seconds: float, start_after: float) -> list[float]:
    await asyncio.sleep(start_after)
    until = time.monotonic() + seconds
    latencies = []
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.get(url) as response,
            ):
                await response.read()
                ok = response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        latencies.append(time.perf_counter() - started if ok else float("inf"))
        await asyncio.sleep(0.02)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15)
    args = quick.parse_args(parser, streams=20, seconds=1)
    # The server gets core 0 to itself; the fake upstream, the load generator and this prober
    # share core 1 (on a real deployment the upstream and the clients are other machines).
    os.sched_setaffinity(0, {1})
    upstream, upstream_url = start(
        ["taskset", "-c", "1", sys.executable, "-m", "tests.fake_upstream", "20", "0.02"],
        r"fake upstream on (\S+)",
        {},
    )
    server, port = start(
        ["taskset", "-c", "0", sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
        {"PERCEPTION_LLM_UPSTREAM_BASE_URL": upstream_url},  # default cap: 256 in flight
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    load = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            sys.executable,
            "-c",
            "import asyncio, json, sys; sys.path.insert(0, 'benchmarks'); "
            "from load_test import run_level; "
            f"print(json.dumps(asyncio.run(run_level({url!r}, {args.streams}, "
            f"{args.seconds + 4}, 0.3))))",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # Probe once the load has ramped up, and stop before it winds down.
        latencies = asyncio.run(probe(f"http://127.0.0.1:{port}/healthz", args.seconds, 3.0))
        out, _ = load.communicate(timeout=120)
        level = json.loads(out.strip().splitlines()[-1])
    finally:
        for process in (load, server, upstream):
            process.terminate()
            process.wait(timeout=15)
    failed = sum(1 for value in latencies if value == float("inf"))
    ms = sorted(value * 1000 for value in latencies if value != float("inf"))
    print(
        f"load: {args.streams} concurrent streams, {level['streams']} streams in "
        f"{level['seconds']:.0f} s, {level['errors']} errors, TTFT p50 {level['ttft_p50_ms']} ms"
    )
    print(
        f"/healthz: {len(latencies)} probes, {failed} failed, p50 {statistics.median(ms):.1f} ms, "
        f"p99 {ms[min(len(ms) - 1, int(len(ms) * 0.99))]:.1f} ms, max {ms[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
