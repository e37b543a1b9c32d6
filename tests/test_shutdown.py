"""SIGTERM during a live stream: the stream completes (or, past the grace period, ends with a
finish chunk and [DONE]), new connections are refused, and the process exits with status 0."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fake_upstream import FakeUpstream, text_reply


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream().serving() as upstream:
        yield upstream


def start_server(fake: FakeUpstream, *extra: str, **env: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0", *extra],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PERCEPTION_LLM_UPSTREAM_BASE_URL": fake.base_url, **env},
    )
    assert process.stderr is not None
    for line in process.stderr:
        match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
        if match:
            return process, int(match.group(1))
    raise AssertionError("server did not start")


def stream_with_sigterm(process: subprocess.Popen[str], port: int) -> list[Any]:
    """Start a stream, SIGTERM the server after its first token, read the stream to its end."""
    body = {"model": "m", "messages": [{"role": "user", "content": "tell me"}], "stream": True}
    payloads: list[Any] = []
    with httpx.stream(
        "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=30
    ) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            payloads.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
            if len(payloads) == 1:
                process.send_signal(signal.SIGTERM)
    return payloads


def text_of(payloads: list[Any]) -> str:
    return "".join(
        p["choices"][0]["delta"].get("content") or ""
        for p in payloads
        if isinstance(p, dict) and p.get("choices")
    )


def test_sigterm_lets_the_stream_finish_and_exits_0(fake: FakeUpstream) -> None:
    words = [f"w{i} " for i in range(8)]
    fake.script = [text_reply(*words, gap=0.15)]
    process, port = start_server(fake)
    payloads = stream_with_sigterm(process, port)
    assert text_of(payloads) == "".join(words)  # every word, after the signal too
    assert payloads[-1] == "[DONE]"
    assert [p["choices"][0]["finish_reason"] for p in payloads if isinstance(p, dict)].count(
        "stop"
    ) == 1
    assert process.wait(timeout=20) == 0


def test_past_the_grace_period_the_stream_ends_with_done(fake: FakeUpstream) -> None:
    words = [f"w{i} " for i in range(40)]
    fake.script = [text_reply(*words, gap=0.1)]  # 4 s of reply
    process, port = start_server(fake, PERCEPTION_LLM_SHUTDOWN_GRACE_SECONDS="0.5")
    started = time.monotonic()
    payloads = stream_with_sigterm(process, port)
    assert time.monotonic() - started < 3
    assert payloads[-1] == "[DONE]"
    finishes = [p["choices"][0]["finish_reason"] for p in payloads if isinstance(p, dict)]
    assert finishes.count("stop") == 1 and finishes[-1] == "stop"
    assert 0 < len(text_of(payloads)) < len("".join(words))
    assert process.wait(timeout=20) == 0
    assert fake.received[0].gone.wait(2)  # the upstream request was closed too


def test_idle_server_exits_0_and_stops_accepting(fake: FakeUpstream) -> None:
    process, port = start_server(fake)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_several_workers_are_refused_in_one_line_pointing_at_the_recipe() -> None:
    """`--workers 2` split a conversation's overlapping requests between processes, so newest
    wins held for fewer conversations (benchmarks/newest_wins.py); replicas behind the shipped
    nginx configuration keep it (tests/test_deployment.py)."""
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "newest wins" in line and "deploy/nginx/perception-llm.conf" in line
