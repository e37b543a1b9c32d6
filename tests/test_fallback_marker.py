"""A fallback reply is visible to developers and invisible to Tavus (issue 21): an SSE comment
line before the first chunk and a response header say why, the OpenAI SDK reads the stream as
any other, and `simulate` and `compare` report it. Through real uvicorn and a real upstream."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from server.completion.fallback_marker import FALLBACK_HEADER
from server.inprocess import running_server
from tests.conftest import make_settings
from tests.fake_upstream import FakeUpstream, Reply, text_reply

FALLBACK = "Sorry, I lost my train of thought for a second. Could you say that again?"
BODY = {"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "Hi there"}]}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_settings() -> dict[str, object]:
    return {"upstream_base_url": f"http://127.0.0.1:{closed_port()}/v1"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream().serving() as upstream:
        yield upstream


def raw_stream(url: str) -> tuple[httpx.Headers, list[str]]:
    with httpx.stream("POST", url + "/v1/chat/completions", json=BODY, timeout=30) as response:
        return response.headers, response.read().decode().split("\n")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (None, "upstream unreachable"),
        (Reply(status=500, error={"message": "boom"}), "upstream error"),
        (Reply(status=401, error={"message": "bad key"}), "upstream refused the key (HTTP 401)"),
        (
            Reply(status=404, error={"message": "no model"}),
            "upstream rejected the request (HTTP 404)",
        ),
    ],
)
def test_the_stream_says_why_it_fell_back(
    fake: FakeUpstream, reply: Reply | None, reason: str
) -> None:
    settings = unreachable_settings()
    if reply is not None:
        fake.script = [reply]
        settings = {"upstream_base_url": fake.base_url}
    with running_server(make_settings(**settings)) as url:
        headers, lines = raw_stream(url)
        assert headers[FALLBACK_HEADER] == reason
        assert lines[:2] == [f": fallback: {reason}", ""]  # before the first chunk
        assert lines[2].startswith("data: {")
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(**BODY))  # type: ignore[call-overload]
    # Invisible to an OpenAI client: the same chunks and text as any reply.
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FALLBACK
    assert chunks[0].choices[0].delta.role == "assistant"


def test_a_reply_of_the_model_carries_no_marker(fake: FakeUpstream) -> None:
    fake.script = [text_reply("Hello from the model.")]
    with running_server(make_settings(upstream_base_url=fake.base_url)) as url:
        headers, lines = raw_stream(url)
    assert FALLBACK_HEADER not in headers
    assert not any(line.startswith(":") for line in lines)


def test_a_fallback_after_a_keep_alive_is_still_marked_in_the_stream(fake: FakeUpstream) -> None:
    # The upstream never answers: keep-alives go out (the headers with them), then the
    # first-token deadline ends it in the fallback. The comment line still says why.
    fake.script = [Reply(steps=[("hang", None)])]
    settings = make_settings(
        upstream_base_url=fake.base_url, keepalive_seconds=0.1, first_token_timeout_seconds=1.0
    )
    with running_server(settings) as url:
        _, lines = raw_stream(url)
    assert ": keep-alive" in lines
    assert ": fallback: upstream timeout" in lines
    assert lines.index(": fallback: upstream timeout") < min(
        i for i, line in enumerate(lines) if line.startswith("data: ")
    )


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPTION_LLM_")}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
    )


def test_simulate_reports_the_fallback() -> None:
    with running_server(make_settings(**unreachable_settings())) as url:
        result = cli("simulate", "--url", url + "/v1", "--model", "gpt", env={})
    assert (
        "fallback: upstream unreachable (the line above is not the model's reply)" in result.stdout
    )
    assert "fallback: upstream unreachable — replies were the endpoint's fallback line" in (
        result.stdout
    )


def test_compare_reports_the_fallback_and_fails() -> None:
    result = cli(
        "compare",
        "basic-story",
        "--prompts",
        "minimal",
        "--model",
        "gpt",
        env={
            "PERCEPTION_LLM_UPSTREAM_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
            "PERCEPTION_LLM_UPSTREAM_CHECK": "false",
        },
    )
    assert result.returncode == 1
    assert "fallback: upstream unreachable" in result.stderr  # progress
    assert f"[fallback: upstream unreachable] {FALLBACK}" in result.stdout  # the table
    assert "3 turns failed or fell back" in result.stderr
