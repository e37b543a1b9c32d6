"""Bounded load test on loopback: many concurrent streams through the server to a fake upstream.

Three processes: the fake OpenAI-compatible upstream (20 tokens, 20 ms apart, like a fast
model), the server (`perception-llm serve`, default template), and this load generator
(aiohttp). For each concurrency level, that many clients stream back to back for a fixed time;
a share of the streams is abandoned right after its first token, as Tavus abandons speculative
requests. Reported per level: streams, errors (target 0), time to first token p50/p99. Then the
highest level runs again several times, with the server's RSS read after each run: it must not
grow. Loopback only; every loop is bounded in time.

Run: .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/load_test.py
Writes benchmarks/results/load.json and benchmarks/results/latency-vs-concurrency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from processes import ROOT, start

RESULTS = ROOT / "benchmarks" / "results"
BODY = json.loads((ROOT / "server/samples/raven0-documented.json").read_text())


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process, in KiB, from /proc."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def client(
    session: aiohttp.ClientSession,
    url: str,
    until: float,
    abandon_share: float,
    rng: random.Random,
    stats: dict[str, Any],
) -> None:
    while time.monotonic() < until:
        abandon = rng.random() < abandon_share
        started = time.perf_counter()
        first = None
        try:
            async with session.post(url, json={**BODY, "stream": True}) as response:
                if response.status != 200:
                    stats["errors"].append(f"HTTP {response.status}")
                    if response.status == 429:  # back off as the OpenAI SDK (Tavus' client) does
                        await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    continue
                buffer = b""
                done = False
                async for data in response.content.iter_any():
                    buffer += data
                    if first is None and b'"content"' in buffer:
                        first = time.perf_counter() - started
                        if abandon:
                            break
                    if b'"error"' in buffer:
                        stats["errors"].append("error event")
                        break
                    if buffer.endswith(b"data: [DONE]\n\n"):
                        done = True
                if not abandon and not done:
                    stats["errors"].append("no [DONE]")
        except (TimeoutError, aiohttp.ClientError) as error:
            stats["errors"].append(type(error).__name__)
            continue
        stats["streams"] += 1
        stats["abandoned"] += abandon
        if first is not None:
            stats["ttft"].append(first)


async def run_level(
    url: str, concurrency: int, seconds: float, abandon_share: float
) -> dict[str, Any]:
    stats: dict[str, Any] = {"streams": 0, "abandoned": 0, "errors": [], "ttft": []}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(
                client(session, url, until, abandon_share, random.Random(i), stats)
                for i in range(concurrency)
            )
        )
    ttft = sorted(stats["ttft"])
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "streams": stats["streams"],
        "abandoned": stats["abandoned"],
        "errors": len(stats["errors"]),
        "error_kinds": sorted(set(stats["errors"])),
        "ttft_p50_ms": round(statistics.median(ttft) * 1000, 2) if ttft else None,
        "ttft_p99_ms": round(ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))] * 1000, 2)
        if ttft
        else None,
    }


def draw(levels: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [level["concurrency"] for level in levels]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(x, [level["ttft_p50_ms"] for level in levels], marker="o", label="p50")
    axes.plot(x, [level["ttft_p99_ms"] for level in levels], marker="o", label="p99")
    axes.set_xscale("log", base=2)
    axes.set_xticks(x, [str(v) for v in x])
    axes.set_xlabel("concurrent streams (30% abandoned after the first token)")
    axes.set_ylabel("time to first token through the server (ms)")
    axes.set_title("perception-llm on loopback, 2 cores shared with upstream and client")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


async def fetch(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,16,64,128,256")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--abandon", type=float, default=0.3)
    parser.add_argument(
        "--capture", help="record every call to this database (PERCEPTION_LLM_CAPTURE)"
    )
    args = parser.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    upstream, upstream_url = start(
        [sys.executable, "-m", "tests.fake_upstream", "20", "0.02"], r"fake upstream on (\S+)", {}
    )
    server, port = start(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
        {
            "PERCEPTION_LLM_UPSTREAM_BASE_URL": upstream_url,
            "PERCEPTION_LLM_MAX_CONCURRENT_STREAMS": "2048",
            **({"PERCEPTION_LLM_CAPTURE": args.capture} if args.capture else {}),
        },
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        rss_start = rss_kib(server.pid)[0]
        sweep = []
        for concurrency in levels:
            result = asyncio.run(run_level(url, concurrency, args.seconds, args.abandon))
            sweep.append(result)
            print(json.dumps(result), flush=True)
        repeats = []
        for run in range(args.repeats):
            result = asyncio.run(run_level(url, levels[-1], args.seconds, args.abandon))
            current, peak = rss_kib(server.pid)
            result.update(run=run + 1, rss_after_kib=current, rss_peak_kib=peak)
            repeats.append(result)
            print(json.dumps(result), flush=True)
        if args.capture:
            metrics = asyncio.run(fetch(url.replace("/v1/chat/completions", "/metrics")))
            dropped = [line for line in metrics.splitlines() if "capture_dropped_total{" in line]
            print("capture drops:", dropped or "none", flush=True)
    finally:
        for process in (server, upstream):
            process.terminate()
            process.wait(10)
    report = {"rss_start_kib": rss_start, "sweep": sweep, "repeats": repeats}
    RESULTS.mkdir(exist_ok=True)
    if args.capture:  # the capture run is reported beside the plain one, not over it
        (RESULTS / "load-capture.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"written {RESULTS / 'load-capture.json'}")
        return
    (RESULTS / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    draw(sweep, RESULTS / "latency-vs-concurrency.png")
    print(f"written {RESULTS / 'load.json'} and latency-vs-concurrency.png")


if __name__ == "__main__":
    main()
