"""The capture database stops in the middle of a run: no completion may fail, drops are counted.

Starts the server recording to PostgreSQL, streams requests back to back, stops the database
cluster a third of the way in (`pg_ctlcluster VERSION main stop`, so it needs root and a local
cluster), starts it again two thirds in, and reports: completions and failures in each stretch,
the drop counter, and the server's log lines about the outage.

Run (as root): .venv/bin/python benchmarks/capture_outage.py \
    postgresql://perception:perception@127.0.0.1:5432/perception_test [--version 15] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import httpx
from processes import ROOT, start

BODY = json.loads((ROOT / "server/samples/raven0-documented.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--version", default="15")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    upstream, upstream_url = start(
        [sys.executable, "-m", "tests.fake_upstream", "20", "0.005", "0.02"],
        r"fake upstream on (\S+)",
    )
    log: list[str] = []
    server, port = start(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
        {"PERCEPTION_LLM_UPSTREAM_BASE_URL": upstream_url, "PERCEPTION_LLM_CAPTURE": args.url},
        lines=log,
    )
    base = f"http://127.0.0.1:{port}"
    stretches = {"before": [0, 0], "database down": [0, 0], "after": [0, 0]}
    started = time.monotonic()
    stopped = restarted = False
    try:
        with httpx.Client(timeout=30) as client:
            while (elapsed := time.monotonic() - started) < args.seconds:
                if not stopped and elapsed > args.seconds / 3:
                    subprocess.run(["pg_ctlcluster", args.version, "main", "stop"], check=True)
                    stopped = True
                if not restarted and elapsed > 2 * args.seconds / 3:
                    subprocess.run(["pg_ctlcluster", args.version, "main", "start"], check=True)
                    restarted = True
                stretch = "after" if restarted else "database down" if stopped else "before"
                try:
                    with client.stream("POST", base + "/v1/chat/completions", json=BODY) as reply:
                        text = "".join(reply.iter_text())
                    ok = reply.status_code == 200 and "[DONE]" in text
                except httpx.HTTPError:
                    ok = False
                stretches[stretch][0 if ok else 1] += 1
            time.sleep(3)  # the writer's next batch after the restart
            metrics = client.get(base + "/metrics").text
    finally:
        if stopped and not restarted:
            subprocess.run(["pg_ctlcluster", args.version, "main", "start"], check=False)
        server.terminate()
        server.wait(10)
        upstream.terminate()
    for name, (ok, failed) in stretches.items():
        print(f"{name:14} completions {ok:5d}, failed {failed}")
    print(*[line for line in metrics.splitlines() if "capture_dropped_total{" in line], sep="\n")
    print(*[line.strip() for line in log if "capture:" in line], sep="\n")


if __name__ == "__main__":
    main()
