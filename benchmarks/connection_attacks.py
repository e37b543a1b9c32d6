"""Connection attacks that need no key, against `perception-llm serve` as the README starts it.

For `--seconds` (default 20): 1,000 slowloris connections send a header byte a second
(reconnecting when closed), 40 connections each try to send a 50 MiB header value, and
meanwhile a legitimate streamed completion is made every half second. Printed: how the
legitimate requests fared (all must succeed, each within 1 s), how many attack connections the
server closed, and the server's peak RSS (target under 300 MiB).

Run: .venv/bin/python benchmarks/connection_attacks.py [--slowloris 1000] [--big 40]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import quick
from processes import start

BODY = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def slowloris(port: int, until: float, closed: list[int]) -> None:
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            while time.monotonic() < until:
                writer.write(b"X")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                        break
                    break  # an answer (408) means the server cut us off
                except TimeoutError:
                    continue
            closed[0] += 1
        except OSError:
            closed[0] += 1
        finally:
            writer.close()


async def big_header(port: int, until: float, refused: list[int]) -> None:
    piece = b"v" * 65536
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
            for _ in range(50 * 16):  # 50 MiB
                writer.write(piece)
                await writer.drain()
            await reader.read(1024)
        except OSError:
            pass
        refused[0] += 1
        writer.close()
        await asyncio.sleep(0.1)


async def legitimate(base: str, until: float, results: list[float], errors: list[str]) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                async with session.post(base + "/v1/chat/completions", json=BODY) as response:
                    text = await response.text()
                    if response.status != 200 or "[DONE]" not in text:
                        errors.append(f"HTTP {response.status}")
                    else:
                        results.append(time.perf_counter() - started)
            except Exception as error:  # every failure is a data point here
                errors.append(type(error).__name__)
            await asyncio.sleep(0.5)


async def run(port: int, pid: int, seconds: float, slow: int, big: int) -> None:
    until = time.monotonic() + seconds
    closed, refused = [0], [0]
    results: list[float] = []
    errors: list[str] = []
    peak = [0.0]

    async def watch_rss() -> None:
        while time.monotonic() < until:
            peak[0] = max(peak[0], rss_mib(pid)[0])
            await asyncio.sleep(0.2)

    base = f"http://127.0.0.1:{port}"
    await asyncio.gather(
        watch_rss(),
        legitimate(base, until, results, errors),
        *(slowloris(port, until, closed) for _ in range(slow)),
        *(big_header(port, until, refused) for _ in range(big)),
    )
    ms = sorted(r * 1000 for r in results)
    print(f"attack: {slow} slowloris + {big} x 50 MiB headers for {seconds:.0f} s")
    print(f"legitimate completions: {len(ms)} ok, {len(errors)} failed {sorted(set(errors))}")
    if ms:
        print(f"  latency p50 {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms (target < 1000)")
    print(f"slowloris connections closed by the server: {closed[0]}")
    print(f"big-header attempts ended by the server: {refused[0]}")
    print(f"server RSS peak during the attack: {peak[0]:.0f} MiB (VmHWM {rss_mib(pid)[1]:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--slowloris", type=int, default=1000)
    parser.add_argument("--big", type=int, default=40)
    args = quick.parse_args(parser, seconds=2, slowloris=30, big=2)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this client needs the sockets too
    server, port = start(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
    )
    try:
        asyncio.run(run(int(port), server.pid, args.seconds, args.slowloris, args.big))
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
