"""Does "newest wins" hold across processes? Speculative inference for N conversations against
three layouts, in one run:

- one process (`perception-llm serve`): the reference;
- `--workers 2`, as `serve --workers 2` ran before issue 26 (uvicorn's workers share one
  listening socket and the kernel hands each connection to any of them);
- three replicas behind the shipped nginx configuration (deploy/nginx/perception-llm.conf,
  consistent hash on `conversation-id`).

For each conversation a partial transcript starts streaming (Tavus' speculative request), then
the full one follows on another connection. Newest wins held when the partial request ended as
superseded (its upstream call closed); otherwise both ran to the end, paying the upstream twice.

Run: .venv/bin/python benchmarks/newest_wins.py [--conversations 12]   (needs Debian's nginx)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import quick
from processes import ROOT, start

sys.path.insert(0, str(ROOT))
from tests.fake_upstream import FakeUpstream, text_reply
from tests.nginx_proxy import free_port, running_nginx

READY = r"Uvicorn running on http://127\.0\.0\.1:(\d+)"
# `serve --workers 2` as it was: the same uvicorn.run call, with two workers.
OLD_WORKERS = (
    "import uvicorn; uvicorn.run('server.app:create_app', factory=True, host='127.0.0.1', "
    "port={port}, workers=2, http='server.http.protocol:GuardedHttpProtocol', loop='asyncio')"
)


async def superseded(client: httpx.AsyncClient, base: str, conversation: str) -> bool:
    """True when the partial request was superseded by the full one."""
    first_token = asyncio.Event()
    codes: list[str | None] = []

    async def read(words: str, mark: bool) -> None:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": words}]}
        headers = {"conversation-id": conversation}
        async with client.stream(
            "POST", base + "/v1/chat/completions", json=body, headers=headers
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    payload = json.loads(line[6:])
                    if mark and "error" in payload:
                        codes.append(payload["error"].get("code"))
                    if mark:
                        first_token.set()
        first_token.set()

    partial = asyncio.ensure_future(read(f"{conversation} I think", True))
    await first_token.wait()
    await read(f"{conversation} I think we should go", False)
    await partial
    return "superseded" in codes


async def count(base: str, conversations: int) -> int:
    async with httpx.AsyncClient(timeout=30) as client:
        results = await asyncio.gather(
            *(superseded(client, base, f"nw-{uuid.uuid4().hex[:8]}") for _ in range(conversations))
        )
    return sum(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3)
    args = quick.parse_args(parser, conversations=3, runs=1)
    with FakeUpstream(record=False).serving() as fake:
        fake.script = [text_reply(*[f"w{i} " for i in range(40)], gap=0.05)]  # 2 s replies
        env = {
            "PERCEPTION_LLM_UPSTREAM_BASE_URL": fake.base_url,
            "PERCEPTION_LLM_UPSTREAM_CHECK": "false",
        }
        serve = [sys.executable, "-m", "server.cli", "serve", "--port", "0"]
        one, one_port = start(serve, READY, env)
        port = free_port()
        workers, _ = start(
            [sys.executable, "-c", OLD_WORKERS.format(port=port)],
            "(Application startup complete)",
            env,
        )
        replicas = [start(serve, READY, env) for _ in range(3)]
        try:
            with (
                tempfile.TemporaryDirectory() as prefix,
                running_nginx(Path(prefix), [int(p) for _, p in replicas]) as (nginx, _),
            ):
                layouts = {
                    "one process": f"http://127.0.0.1:{one_port}",
                    "--workers 2 (before)": f"http://127.0.0.1:{port}",
                    "3 replicas behind nginx": nginx,
                }
                for run in range(args.runs):
                    for name, base in layouts.items():
                        held = asyncio.run(count(base, args.conversations))
                        print(
                            f"run {run + 1}: {name:24} newest wins held {held}/{args.conversations}"
                        )
        finally:
            for process in [one, workers, *(p for p, _ in replicas)]:
                process.terminate()
                process.wait(20)


if __name__ == "__main__":
    main()
