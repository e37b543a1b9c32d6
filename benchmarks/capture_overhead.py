"""What recording calls costs a call: time to first token with capture on vs off, in one run.

Processes on loopback: the fake upstream (first token after 20 ms, then 20 tokens 5 ms apart),
two servers in front of it — one plain, one recording every call to a SQLite file — and this
client. 1 stream, a short raven body, an idle gap before every request (as in a call), targets
in a shuffled order each round; then bursts of 32, and the store's row count at the end (every
call recorded, none dropped). Target: capture adds <= 0.2 ms at p50.

Run: .venv/bin/python benchmarks/capture_overhead.py [--rounds 150] [--bursts 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
from pathlib import Path

import httpx
import quick
from processes import start
from relay_latency import SHORT, phase


async def measure(targets: dict[str, str], pids: dict[str, int], args: argparse.Namespace) -> None:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for label, concurrency, repeats in (
            ("1 stream", 1, args.rounds),
            ("32 streams", 32, args.bursts),
        ):
            result = await phase(client, targets, pids, SHORT, concurrency, repeats, args.idle)
            plain = result["rows"]["plain"]
            print(
                f"{label} (n={result['n']} per target, direct p50 {result['direct_p50']:.2f} ms):"
            )
            for name, row in result["rows"].items():
                extra = (
                    ""
                    if name == "plain"
                    else f", capture adds {row['added_p50'] - plain['added_p50']:+.2f} ms p50"
                )
                print(
                    f"  {name:8} added p50 {row['added_p50']:6.2f} ms, "
                    f"p99 {row['added_p99']:6.2f} ms{extra}, CPU {row['cpu_ms']:.2f} ms/request",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--idle", type=float, default=0.05)
    args = quick.parse_args(parser, rounds=5, bursts=1)
    database = Path(tempfile.mkdtemp()) / "calls.db"
    upstream, upstream_url = start(
        [sys.executable, "-m", "tests.fake_upstream", "20", "0.005", "0.02"],
        r"fake upstream on (\S+)",
    )
    servers = {}
    for name, extra in (
        ("plain", {}),
        ("capture", {"PERCEPTION_LLM_CAPTURE": f"sqlite:///{database}"}),
    ):
        process, port = start(
            [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
            r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
            {"PERCEPTION_LLM_UPSTREAM_BASE_URL": upstream_url, **extra},
        )
        servers[name] = (process, f"http://127.0.0.1:{port}/v1/chat/completions")
    targets = {
        "direct": upstream_url + "/chat/completions",
        **{n: url for n, (_, url) in servers.items()},
    }
    pids = {name: process.pid for name, (process, _) in servers.items()}
    try:
        asyncio.run(measure(targets, pids, args))
        dropped = httpx.get(servers["capture"][1].replace("/v1/chat/completions", "/metrics")).text
        lines = [
            line
            for line in dropped.splitlines()
            if line.startswith("perception_llm_capture_dropped_total{")
        ]
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(10)
        upstream.terminate()
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT count(*) FROM captured_calls").fetchone()[0]
    print(f"calls recorded: {rows}; dropped: {lines or 'none'}")


if __name__ == "__main__":
    main()
