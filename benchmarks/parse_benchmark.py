"""Median time to parse a 200-message raven conversation with a perception message every turn.

Run: .venv/bin/python benchmarks/parse_benchmark.py   (target: median under 1 ms on one core)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quick
from conversations import raven_conversation

from perception import parse_messages


def main(repeats: int = 2000) -> None:
    messages = raven_conversation(67)[:200]
    for _ in range(200):  # warm caches
        parse_messages(messages)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        parse_messages(messages)
        timings.append(time.perf_counter() - start)
    timings.sort()
    result = parse_messages(messages)
    print(f"messages: {len(messages)}, observations: {len(result.observations)}")
    print(f"median: {statistics.median(timings) * 1000:.3f} ms")
    print(f"p99:    {timings[int(len(timings) * 0.99)] * 1000:.3f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000, help="timed parses")
    main(quick.parse_args(parser, repeats=200).repeats)
