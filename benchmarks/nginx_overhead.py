"""What nginx (the shipped deploy/nginx/perception-llm.conf) adds to a call, beside the raw relay
floor, in one interleaved run.

Processes on loopback: the fake upstream (first token after 20 ms, then 20 tokens 5 ms apart),
the raw byte-copying relay (benchmarks/raw_relay.py), one replica reached directly, and a
second replica reached through nginx (one worker process, the shipped configuration with its
addresses rendered by tests/nginx_proxy.py). Same method as relay_latency.py: an idle gap
before every request at 1 stream, bursts at 16; added time to the first content token over the
direct upstream; CPU per request from /proc (for nginx: its worker process).

nginx's own cost is the difference between the replica through nginx and the replica reached
directly. Capacity scaling (more replicas, more throughput) cannot be measured on this 2-core
machine: three replicas, nginx, the fake upstream and the client would share 2 cores (and other
work), so adding replicas only adds contention.

Run: .venv/bin/python benchmarks/nginx_overhead.py [--rounds 150] [--bursts 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import quick
from processes import ROOT, start
from relay_latency import SHORT, phase, ttft

sys.path.insert(0, str(ROOT))
from tests.nginx_proxy import running_nginx

READY = r"Uvicorn running on http://127\.0\.0\.1:(\d+)"


def worker_of(master: int) -> int:
    """nginx's worker process (the configuration runs one), whose CPU serves the requests."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    (worker,) = children
    return int(worker)


async def measure(targets: dict[str, str], pids: dict[str, int], args: Any) -> None:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for url in targets.values():  # warm up connections and lazily imported paths
            for _ in range(30):
                await ttft(client, url, SHORT)
        for label, concurrency, repeats in (
            ("1 stream", 1, args.rounds),
            ("16 streams", 16, args.bursts),
        ):
            result = await phase(client, targets, pids, SHORT, concurrency, repeats, args.idle)
            rows = result["rows"]
            print(f"short raven, {label} (n={result['n']} per target):")
            for name, row in rows.items():
                cpu = "" if row["cpu_ms"] is None else f", CPU {row['cpu_ms']:.2f} ms/request"
                print(
                    f"  {name:24} added p50 {row['added_p50']:6.2f} ms, "
                    f"p99 {row['added_p99']:6.2f} ms{cpu}"
                )
            nginx = (
                rows["nginx -> perception-llm"]["added_p50"] - rows["perception-llm"]["added_p50"]
            )
            print(f"  nginx adds {nginx:+.2f} ms p50 to perception-llm", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=150, help="1-stream requests per target")
    parser.add_argument("--bursts", type=int, default=10, help="16-stream bursts per target")
    parser.add_argument("--idle", type=float, default=0.05, help="idle seconds before each")
    args = quick.parse_args(parser, rounds=10, bursts=1)
    upstream, upstream_url = start(
        [sys.executable, "-m", "tests.fake_upstream", "20", "0.005", "0.02"],
        r"fake upstream on (\S+)",
    )
    relay, relay_url = start(
        [sys.executable, "benchmarks/raw_relay.py", upstream_url], r"raw relay on (\S+)"
    )
    env = {"PERCEPTION_LLM_UPSTREAM_BASE_URL": upstream_url}
    serve = [sys.executable, "-m", "server.cli", "serve", "--port", "0"]
    direct, direct_port = start(serve, READY, env)
    behind, behind_port = start(serve, READY, env)
    try:
        with (
            tempfile.TemporaryDirectory() as prefix,
            running_nginx(Path(prefix), [int(behind_port)]) as (nginx_url, _),
        ):
            master = int((Path(prefix) / "nginx.pid").read_text())
            targets = {
                "direct": upstream_url + "/chat/completions",
                "raw relay": relay_url + "/chat/completions",
                "perception-llm": f"http://127.0.0.1:{direct_port}/v1/chat/completions",
                "nginx -> perception-llm": nginx_url + "/v1/chat/completions",
            }
            pids = {
                "raw relay": relay.pid,
                "perception-llm": direct.pid,
                "nginx -> perception-llm": worker_of(master),
            }
            print("targets:", targets, flush=True)
            asyncio.run(measure(targets, pids, args))
    finally:
        for process in (direct, behind, relay, upstream):
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
