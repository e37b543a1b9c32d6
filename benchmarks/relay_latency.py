"""Added time to first content token: through perception-llm vs straight to the same upstream.

Three processes on loopback: a fake OpenAI-compatible upstream (tests/fake_upstream.py), the
server (`perception-llm serve`, default template, logging on), and this client. Requests go
alternately direct and through the server (interleaved, so drift hits both alike), at 1 and at
32 concurrent streams. "Added" compares the two distributions at p50 and p99.

Run: .venv/bin/python benchmarks/relay_latency.py [--pairs 400] [--rounds 40]
Targets (issue 5), 1 stream: p50 < 1 ms, p99 < 5 ms added.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time

import httpx
from processes import ROOT, start

CONTENT = re.compile(r'"content":\s*"w')  # the fake's words are w0, w1, ...
BODY = json.loads((ROOT / "server/samples/raven0-documented.json").read_text())


async def ttft(client: httpx.AsyncClient, url: str) -> float:
    """Seconds from sending the request to the first content token."""
    started = time.perf_counter()
    elapsed = None
    async with client.stream("POST", url, json=BODY) as response:
        async for line in response.aiter_lines():  # read it all, so the connection is reused
            if elapsed is None and line.startswith("data: {") and CONTENT.search(line):
                elapsed = time.perf_counter() - started
    if elapsed is None:
        raise RuntimeError("no content token")
    return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(direct: str, server: str, pairs: int, rounds: int) -> dict[str, dict[str, float]]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for _ in range(50):  # warm up connections, caches, the JIT-less interpreter paths
            await ttft(client, direct)
            await ttft(client, server)
        results: dict[str, dict[str, float]] = {}
        one: dict[str, list[float]] = {"direct": [], "server": []}
        for _ in range(pairs):
            one["direct"].append(await ttft(client, direct))
            one["server"].append(await ttft(client, server))
        many: dict[str, list[float]] = {"direct": [], "server": []}
        for _ in range(rounds):
            for name, url in (("direct", direct), ("server", server)):
                many[name].extend(await asyncio.gather(*(ttft(client, url) for _ in range(32))))
        for label, samples in (("1 stream", one), ("32 streams", many)):
            d, s = samples["direct"], samples["server"]
            results[label] = {
                "n": len(s),
                "direct_p50_ms": statistics.median(d) * 1000,
                "server_p50_ms": statistics.median(s) * 1000,
                "added_p50_ms": (statistics.median(s) - statistics.median(d)) * 1000,
                "direct_p99_ms": pct(d, 0.99) * 1000,
                "server_p99_ms": pct(s, 0.99) * 1000,
                "added_p99_ms": (pct(s, 0.99) - pct(d, 0.99)) * 1000,
            }
        return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    upstream, upstream_url = start(
        [sys.executable, "-m", "tests.fake_upstream", "20"], r"fake upstream on (\S+)"
    )
    server, port = start(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
        {"PERCEPTION_LLM_UPSTREAM_BASE_URL": upstream_url},
    )
    try:
        results = asyncio.run(
            measure(
                upstream_url + "/chat/completions",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                args.pairs,
                args.rounds,
            )
        )
    finally:
        for process in (server, upstream):
            process.terminate()
            process.wait(10)
    for label, row in results.items():
        print(
            f"{label:10} n={row['n']:5d}  direct p50 {row['direct_p50_ms']:.2f} ms, "
            f"via server p50 {row['server_p50_ms']:.2f} ms "
            f"-> added p50 {row['added_p50_ms']:.2f} ms, p99 {row['added_p99_ms']:.2f} ms "
            f"(direct p99 {row['direct_p99_ms']:.2f}, server p99 {row['server_p99_ms']:.2f})"
        )


if __name__ == "__main__":
    main()
