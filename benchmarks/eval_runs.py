"""What prompt experiments cost (issue 25), measured as a user runs them (the CLI, a process each).

1. The shipped example suite (`perception-basics`: 3 tests x 2 templates, `echo`): wall time,
   model calls, and a rerun of the unchanged suite (cache hits, model calls: target 0).
2. 100 cells against a slow fake model at -j 8: the fake upstream answers after FIRST_TOKEN
   seconds; perception-llm runs in process in front of it (as `eval` runs by default); with
   --no-cache every cell calls it. Target: wall time close to 100 x latency / 8.
3. A/B split shares over 1,000 conversation ids for a few weightings (target: each arm within
   +-5 points of its weight).

Run: .venv/bin/python benchmarks/eval_runs.py [--runs 3] [--first-token 0.4]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from processes import ROOT, start

CLI = [sys.executable, "-m", "server.cli", "eval"]
TOOK = re.compile(r"took ([\d.]+) s: (\d+) model calls, (\d+) judge calls, (\d+) cache hits")
CELLS_SUITE = """\
templates: [default, minimal]
models: [fake-model]
repeat: 10
defaultTest:
  assert:
    - {type: max-tokens, value: 500}
tests: [raven-cooking, raven1-sarcasm, basic-story, screenshare-injection, phoenix4-emotions]
"""


def eval_once(args: list[str], env: dict[str, str] | None = None) -> tuple[float, re.Match[str]]:
    started = time.perf_counter()
    result = subprocess.run(
        [*CLI, *args], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})},
        check=False, timeout=600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    found = TOOK.search(result.stdout)
    if found is None:
        raise RuntimeError(result.stdout + result.stderr)
    return wall, found


def example_suite(runs: int) -> None:
    print("1. shipped example suite (perception-basics, echo, 2 templates x 3 tests)")
    for run in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            db = ["--db", f"sqlite:///{folder}/e.db"]
            first_wall, first = eval_once(["perception-basics", *db])
            again_wall, again = eval_once(["perception-basics", *db])
        print(
            f"  run {run + 1}: first {first_wall:.2f} s process ({first[1]} s in the matrix), "
            f"{first[2]} model calls, {first[4]} cache hits; rerun {again_wall:.2f} s process "
            f"({again[1]} s), {again[2]} model calls, {again[4]} cache hits"
        )


def slow_model(runs: int, first_token: float, jobs: int) -> None:
    print(f"2. 100 cells, fake model answering after {first_token:.2f} s, -j {jobs}")
    fake, url = start(
        [sys.executable, "-m", "tests.fake_upstream", "10", "0", str(first_token)],
        r"fake upstream on (\S+)",
    )
    try:
        env = {"PERCEPTION_LLM_UPSTREAM_BASE_URL": url, "PERCEPTION_LLM_UPSTREAM_CHECK": "false"}
        ideal = 100 * first_token / jobs
        with tempfile.TemporaryDirectory() as folder:
            suite = Path(folder) / "cells.yaml"
            suite.write_text(CELLS_SUITE)
            for run in range(runs):
                db = ["--db", f"sqlite:///{folder}/e{run}.db"]
                wall, took = eval_once([str(suite), *db, "-j", str(jobs), "--no-cache"], env)
                matrix = float(took[1])
                print(
                    f"  run {run + 1}: matrix {matrix:.2f} s (ideal 100 x {first_token} / {jobs} "
                    f"= {ideal:.2f} s, {matrix / ideal:.2f}x), process {wall:.2f} s, "
                    f"{took[2]} model calls"
                )
    finally:
        fake.terminate()
        fake.wait(10)


def split_shares() -> None:
    sys.path.insert(0, str(ROOT))
    from server.completion.prompt_split import parse_split, split_template

    print("3. A/B split shares over 1,000 conversation ids (conv-0 … conv-999, and uuid4s)")
    import uuid

    for text in ("default=50,minimal=50", "default=90,minimal=10", "a=1,b=1,c=1"):
        split = parse_split(text)
        total = sum(w for _, w in split)
        for label, ids in (
            ("conv-N", [f"conv-{n}" for n in range(1000)]),
            ("uuid4", [str(uuid.uuid4()) for _ in range(1000)]),
        ):
            counts = Counter(split_template(split, i) for i in ids)
            shares = ", ".join(
                f"{name} {counts[name] / 10:.1f}% (weight {100 * w / total:.1f}%)"
                for name, w in split
            )
            worst = max(abs(counts[name] / 1000 - w / total) for name, w in split)
            print(f"  {text:<22} {label:<6}: {shares}; worst {100 * worst:.1f} points")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--first-token", type=float, default=0.4)
    parser.add_argument("-j", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="one run each, a 0.1 s model")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.first_token = 1, 0.1
    example_suite(args.runs)
    slow_model(args.runs, args.first_token, args.j)
    split_shares()


if __name__ == "__main__":
    main()
