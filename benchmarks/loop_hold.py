"""How long one request holds the server's event loop: the longest gap of a 1 ms ticker.

Issue 23, finding 6: single requests blocked the loop (250 system messages of 16k characters
of short sentences held `/healthz` 3.1-3.2 s on `/v1/perception/parse`; 120,000 tiny messages
held it 580 ms on the completion path). The server runs in this process (`server.inprocess`,
as the tests run it) so a ticker can run on its own loop: a callback due every millisecond
records how late it ran. Each shape, at `MAX_BODY_BYTES` (4 MB), is sent `--repeat` times on a
raw socket (the body is built before the ticker starts; sending releases the GIL), and the
longest gap while it is handled is printed, with how the request ended. Target: < 50 ms.

Run: .venv/bin/python benchmarks/loop_hold.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import quick

from server.inprocess import live_server
from server.services import services
from server.settings import Settings

LIMIT = 4 * 1024 * 1024


def sentences(chars: int) -> str:
    return ("Be brief. Say hi. Ask why. " * (chars // 27 + 1))[:chars]


def shapes() -> dict[str, tuple[str, bytes]]:
    system = [{"role": "system", "content": sentences(16_000)} for _ in range(250)]
    tiny = [{"role": "user", "content": "hi"} for _ in range(120_000)]
    parts = [{"type": "text", "text": "a"} for _ in range(100_000)]
    completion = {"model": "echo", "stream": False}
    turns = [{"user": "hi", "screen": sentences(16_000)} for _ in range(240)]
    bodies = {
        "parse: 250 system messages x 16k chars": (
            "/v1/perception/parse",
            {"messages": [*system, {"role": "user", "content": "hi"}]},
        ),
        "render: 250 system messages x 16k chars": (
            "/v1/prompts/render",
            {"model": "echo", "messages": [*system, {"role": "user", "content": "hi"}]},
        ),
        "encode: 240 turns x 16k chars": (
            "/v1/playground/encode",
            {"system_prompt": sentences(16_000), "turns": turns},
        ),
        "completion: 120,000 tiny messages": (
            "/v1/chat/completions",
            {**completion, "messages": tiny},
        ),
        "completion: 100,000 content parts": (
            "/v1/chat/completions",
            {**completion, "messages": [{"role": "user", "content": parts}]},
        ),
        "completion: 250 system messages x 16k chars": (
            "/v1/chat/completions",
            {**completion, "messages": [*system, {"role": "user", "content": "hi"}]},
        ),
    }
    out = {}
    for name, (path, body) in bodies.items():
        raw = json.dumps(body, separators=(",", ":")).encode()
        assert len(raw) <= LIMIT, (name, len(raw))
        out[name] = (path, raw)
    return out


class Ticker:
    """A callback due every millisecond on the server's loop; `worst` is its longest gap."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.worst = 0.0
        self.running = True
        loop.call_soon_threadsafe(self._tick, None)

    def _tick(self, last: float | None) -> None:
        now = time.perf_counter()
        if last is not None:
            self.worst = max(self.worst, now - last)
        if self.running:
            self.loop.call_later(0.001, self._tick, now)

    def reset(self) -> None:
        self.worst = 0.0


def send(port: int, path: str, body: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = answer.split(b"\r\n", 1)[0].decode()
    code = b""
    if b'"code":"' in answer:
        code = answer.split(b'"code":"', 1)[1].split(b'"', 1)[0]
    return f"{status.removeprefix('HTTP/1.1 ')} {code.decode()}".strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = quick.parse_args(parser, repeat=1)
    bodies = shapes()
    settings = Settings(_env_file=None, upstream_check=False)  # type: ignore[call-arg]
    with live_server(settings) as server:
        loop = services(server.app).loop
        assert loop is not None
        port = int(server.url.rsplit(":", 1)[1])
        ticker = Ticker(loop)
        time.sleep(0.2)
        for name, (path, body) in bodies.items():
            gaps, outcomes = [], set()
            for _ in range(args.repeat):
                ticker.reset()
                outcomes.add(send(port, path, body))
                time.sleep(0.05)  # any work left after the answer shows up as well
                gaps.append(ticker.worst * 1000)
            print(
                f"{name:48s} longest loop gap: median {statistics.median(gaps):6.1f} ms, "
                f"max {max(gaps):6.1f} ms  ({', '.join(sorted(outcomes))})"
            )
        ticker.running = False
    threading.Event().wait(0.1)


if __name__ == "__main__":
    main()
