"""Availability without a key: thousands of sockets that connect, send nothing and reconnect.

Issue 23: 4,100 such sockets made legitimate streams succeed 34-37 % of the time and `/healthz`
fail 589 of 610 probes. Three processes on loopback: the server as the README starts it
(`perception-llm serve`), an attacker process holding `--sockets` (default 4,100) silent
sockets spread over source addresses 127.0.0.2-.9 (or all from 127.0.0.1, the victims' own
address, with `--from-victim`), reconnecting as soon as the server closes one, and this process:
8 legitimate streamed completions at a time, each on a new connection, and a `/healthz` probe
every 50 ms on a new connection (a load balancer's view). Targets: legitimate success >= 99 %,
`/healthz` p99 < 250 ms. The attacker runs in its own process so that its busy loop does not
delay the measuring one.

Run: .venv/bin/python benchmarks/silent_socket_flood.py [--sockets 4100] [--seconds 20]
     [--from-victim]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import resource
import statistics
import sys
import time

import aiohttp
import quick
from processes import start

BODY = {"model": "echo", "messages": [{"role": "user", "content": "hi there"}], "stream": True}
ATTACKER_ADDRESSES = [f"127.0.0.{n}" for n in range(2, 10)]


def raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the client needs the sockets too


async def silent_socket(port: int, source: str, until: float, opened: list[int]) -> None:
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
        except OSError:
            await asyncio.sleep(0.05)
            continue
        opened[0] += 1
        with contextlib.suppress(OSError, TimeoutError):  # closed by the server, or the end
            await asyncio.wait_for(reader.read(1024), max(until - time.monotonic(), 0.01))
        writer.close()


def attack(port: int, sockets: int, sources: list[str], seconds: float) -> None:
    raise_file_limit()
    opened = [0]

    async def run() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(silent_socket(port, sources[i % len(sources)], until, opened) for i in range(sockets))
        )

    asyncio.run(run())
    print(f"attacker: {opened[0]} connections opened by {sockets} silent sockets", flush=True)


async def legitimate(base: str, until: float, ok: list[float], failed: list[str]) -> None:
    timeout = aiohttp.ClientTimeout(total=15)
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.post(base + "/v1/chat/completions", json=BODY) as response,
            ):
                text = await response.text()
                if response.status == 200 and "[DONE]" in text:
                    ok.append(time.perf_counter() - started)
                else:
                    failed.append(f"HTTP {response.status}")
        except Exception as error:  # every failure is a data point here
            failed.append(type(error).__name__)


async def probe(base: str, until: float, latencies: list[float], failed: list[str]) -> None:
    timeout = aiohttp.ClientTimeout(total=5)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                async with session.get(base + "/healthz") as response:
                    await response.read()
                    if response.status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        failed.append(f"HTTP {response.status}")
            except Exception as error:
                failed.append(type(error).__name__)
            await asyncio.sleep(0.05)


async def measure(port: int, seconds: float) -> None:
    base = f"http://127.0.0.1:{port}"
    until = time.monotonic() + seconds
    ok: list[float] = []
    failed: list[str] = []
    health: list[float] = []
    health_failed: list[str] = []
    await asyncio.gather(
        probe(base, until, health, health_failed),
        *(legitimate(base, until, ok, failed) for _ in range(8)),
    )
    total = len(ok) + len(failed)
    print(
        f"legitimate streams: {len(ok)}/{total} ok ({100 * len(ok) / max(total, 1):.1f} %), "
        f"failures {sorted(set(failed))}"
    )
    if ok:
        ms = sorted(x * 1000 for x in ok)
        print(f"  latency p50 {statistics.median(ms):.0f} ms, p99 {ms[int(len(ms) * 0.99)]:.0f} ms")
    probes = len(health) + len(health_failed)
    ms = sorted(x * 1000 for x in health) or [float("nan")]
    print(
        f"/healthz: {len(health)}/{probes} ok, p50 {statistics.median(ms):.0f} ms, "
        f"p99 {ms[min(int(len(ms) * 0.99), len(ms) - 1)]:.0f} ms, max {ms[-1]:.0f} ms, "
        f"failures {sorted(set(health_failed))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=4100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--from-victim", action="store_true", help="attack from 127.0.0.1")
    args = quick.parse_args(parser, sockets=200, seconds=2)
    raise_file_limit()
    server, port = start(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
    )
    sources = ["127.0.0.1"] if args.from_victim else ATTACKER_ADDRESSES
    attacker = multiprocessing.Process(
        target=attack, args=(int(port), args.sockets, sources, args.seconds + 3)
    )
    try:
        attacker.start()
        time.sleep(3)  # the sockets are open and churning before measuring starts
        print(f"attack: {args.sockets} silent reconnecting sockets from {', '.join(sources)}")
        asyncio.run(measure(int(port), args.seconds))
        attacker.join(timeout=30)
    finally:
        if attacker.is_alive():
            attacker.terminate()
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
