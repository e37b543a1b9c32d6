"""Added time to first token as a Tavus call sees it: perception-llm beside a raw relay (the
floor) and the upstream itself, in one interleaved run.

Processes on loopback: a fake OpenAI-compatible upstream (first token after 20 ms, then 20
tokens 5 ms apart, like a fast hosted model), the raw byte-copying relay (benchmarks/
raw_relay.py), the server (`perception-llm serve`, default template), any `--peer` relay the user
started, and this client. For each body — a short raven request, and a 30-turn raven
conversation with a perception message every turn — and each mode:

- 1 stream: an idle gap (`--idle`, default 50 ms) before every request, as in a call where each
  turn reaches an idle server; targets in a shuffled order each round, so drift hits all alike;
- 32 streams: bursts of 32 concurrent requests per target, an idle gap between bursts.

Printed: added time to the first content token at p50 and p99 over the direct upstream, the
server's extra over the raw relay, and CPU per request of each relay process (utime+stime deltas
from /proc/PID/stat over the phase, divided by its requests).

The 30-turn conversation also runs in Tavus' user-role layout (perception as user messages, issue
22): its added time should be no more than the system-role one's.

Run: .venv/bin/python benchmarks/relay_latency.py [--rounds 200] [--bursts 15] [--peer URL]
     [--body '30-turn raven' --body '30-turn raven, user-role perception']
Targets (this 2-core machine): extra over the raw relay <= 0.5 ms p50 (short body) and <= 1.0 ms
(30 turns) at 1 stream, <= 8 ms at 32 streams; CPU per request <= 2.5x the raw relay's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import quick
from conversations import raven_conversation
from processes import ROOT, start

# The fake's words are w0, w1, ...; with Tavus' Phoenix-4 rule the first follows an emotion tag.
CONTENT = re.compile(r'"content":\s*"(?:<emotion value=\\"\w+\\"/> )?w')
SHORT = json.loads((ROOT / "server/samples/raven0-documented.json").read_text())
LONG = {"model": "gpt-4o-mini", "stream": True, "messages": raven_conversation(30)}
# The same conversation in Tavus' user-role layout (issue 22): must be no slower than LONG.
LONG_USER = {**LONG, "messages": raven_conversation(30, layout="user")}
RULE = ' EVERY RESPONSE MUST BEGIN WITH AN EMOTION TAG such as <emotion value="content"/>.'
EMOTION = {
    **SHORT,
    "messages": [
        {**message, "content": message["content"] + RULE} if index == 0 else message
        for index, message in enumerate(SHORT["messages"])
    ],
}
TICK = os.sysconf("SC_CLK_TCK")
FRESH = itertools.count()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def with_fresh_turn(body: dict[str, Any]) -> dict[str, Any]:
    """`body` whose newest perception message and user turn are new, as in a call: Tavus resends
    the history with every request, but the newest turn was never seen before (servers that
    remember history messages must not be measured on a body they have seen)."""
    mark = next(FRESH)
    messages = list(body["messages"])
    for index in range(len(messages) - 1, max(-1, len(messages) - 3), -1):
        message = messages[index]
        text = message.get("content")
        if isinstance(text, str):  # inside the last perception value, or at the end of speech
            cut = text.rfind("</user_")
            cut = cut if cut >= 0 else len(text)
            messages[index] = {**message, "content": f"{text[:cut]} ({mark}){text[cut:]}"}
    return {**body, "messages": messages}


async def ttft(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> float:
    """Seconds from sending the request to the first content token (the rest is read too)."""
    body = with_fresh_turn(body)
    started = time.perf_counter()
    elapsed = None
    lines = []
    # Every Tavus request names its conversation; each request here is a conversation of its own.
    headers = {"conversation-id": f"bench-{uuid.uuid4().hex}"}
    async with client.stream("POST", url, json=body, headers=headers) as response:
        async for line in response.aiter_lines():
            lines.append(line)
            if elapsed is None and line.startswith("data: {") and CONTENT.search(line):
                elapsed = time.perf_counter() - started
    if elapsed is None:
        raise RuntimeError(f"no content token from {url}: {response.status_code} {lines[:3]}")
    return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def phase(
    client: httpx.AsyncClient,
    targets: dict[str, str],
    pids: dict[str, int],
    body: dict[str, Any],
    concurrency: int,
    repeats: int,
    idle: float,
) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in targets}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    rng = random.Random(5)
    for _ in range(repeats):
        order = list(targets)
        rng.shuffle(order)
        for name in order:
            await asyncio.sleep(idle)
            batch = [ttft(client, targets[name], body) for _ in range(concurrency)]
            samples[name].extend(await asyncio.gather(*batch))
    cpu = {
        name: (cpu_seconds(pid) - cpu_before[name]) / len(samples[name]) * 1000
        for name, pid in pids.items()
    }
    direct = samples["direct"]
    rows = {}
    for name, values in samples.items():
        if name == "direct":
            continue
        rows[name] = {
            "added_p50": (statistics.median(values) - statistics.median(direct)) * 1000,
            "added_p99": (pct(values, 0.99) - pct(direct, 0.99)) * 1000,
            "cpu_ms": cpu.get(name),
        }
    return {"n": len(direct), "direct_p50": statistics.median(direct) * 1000, "rows": rows}


async def measure(targets: dict[str, str], pids: dict[str, int], args: argparse.Namespace) -> None:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for url in targets.values():  # warm up: connections, caches, lazily imported paths
            for _ in range(args.warmup):
                await ttft(client, url, SHORT)
                await ttft(client, url, LONG)
                await ttft(client, url, LONG_USER)
        bodies = (
            ("short raven", SHORT),
            ("30-turn raven", LONG),
            ("short + emotion rule", EMOTION),
            ("30-turn raven, user-role perception", LONG_USER),
        )
        chosen = bodies[: args.bodies]
        if args.body:
            chosen = tuple(item for item in bodies if item[0] in args.body)
        for body_name, body in chosen:
            for label, concurrency, repeats in (
                ("1 stream", 1, args.rounds),
                ("32 streams", 32, args.bursts),
            ):
                if not repeats:  # --bursts 0: the 1-stream phase only
                    continue
                result = await phase(client, targets, pids, body, concurrency, repeats, args.idle)
                floor = result["rows"]["raw relay"]["added_p50"]
                print(
                    f"{body_name}, {label} (n={result['n']} per target, direct p50 "
                    f"{result['direct_p50']:.2f} ms):"
                )
                for name, row in result["rows"].items():
                    extra = (
                        ""
                        if name == "raw relay"
                        else f", extra over floor {row['added_p50'] - floor:+.2f} ms"
                    )
                    cpu = "" if row["cpu_ms"] is None else f", CPU {row['cpu_ms']:.2f} ms/request"
                    print(
                        f"  {name:14} added p50 {row['added_p50']:6.2f} ms, p99 "
                        f"{row['added_p99']:6.2f} ms{extra}{cpu}"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="1-stream requests per target")
    parser.add_argument(
        "--bursts", type=int, default=15, help="32-stream bursts per target (0: none)"
    )
    parser.add_argument("--idle", type=float, default=0.05, help="idle seconds before each")
    parser.add_argument("--bodies", type=int, default=4, help="how many of the bodies to run")
    parser.add_argument(
        "--body",
        action="append",
        default=[],
        help="run only the body with this name (repeatable), e.g. '30-turn raven'",
    )
    parser.add_argument("--peer", help="another relay's chat-completions URL to add to the run")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up requests per body/target")
    args = quick.parse_args(parser, rounds=5, bursts=1, bodies=1, warmup=1)
    upstream, upstream_url = start(
        [sys.executable, "-m", "tests.fake_upstream", "20", "0.005", "0.02"],
        r"fake upstream on (\S+)",
    )
    relay, relay_url = start(
        [sys.executable, "benchmarks/raw_relay.py", upstream_url], r"raw relay on (\S+)"
    )
    server, port = start(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
        {"PERCEPTION_LLM_UPSTREAM_BASE_URL": upstream_url},
    )
    unshared, unshared_port = start(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
        {
            "PERCEPTION_LLM_UPSTREAM_BASE_URL": upstream_url,
            "PERCEPTION_LLM_SHARE_IDENTICAL_REQUESTS": "false",
        },
    )
    targets = {
        "direct": upstream_url + "/chat/completions",
        "raw relay": relay_url + "/chat/completions",
        "perception-llm": f"http://127.0.0.1:{port}/v1/chat/completions",
        "no sharing": f"http://127.0.0.1:{unshared_port}/v1/chat/completions",
    }
    if args.peer:
        targets["peer"] = args.peer
    pids = {"raw relay": relay.pid, "perception-llm": server.pid, "no sharing": unshared.pid}
    print("targets:", targets, flush=True)
    try:
        asyncio.run(measure(targets, pids, args))
    finally:
        for process in (server, unshared, relay, upstream):
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
