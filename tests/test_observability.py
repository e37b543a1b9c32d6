"""Request ids, structured logs, Prometheus metrics and CORS."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import load_sample, make_settings
from tests.fake_upstream import FakeUpstream, Reply, text_reply
from tests.live import running_server

RAVEN = load_sample("raven0-documented")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running_server(make_settings()) as base:
        yield base


def complete(
    url: str, headers: dict[str, str] | None = None, stream: bool = False
) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json={**RAVEN, "stream": stream},
        headers=headers or {},
        timeout=10,
    )


def test_request_id_is_honoured_and_echoed(url: str) -> None:
    assert (
        complete(url, {"x-request-id": "tavus-abc.123:x"}).headers["x-request-id"]
        == "tavus-abc.123:x"
    )
    generated = complete(url).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated)
    assert (
        httpx.get(url + "/v1/nope", headers={"x-request-id": "r1"}).headers["x-request-id"] == "r1"
    )


@pytest.mark.parametrize(
    "hostile", [b"bad id INFO forged log line", b"a" * 200, b"id;rm -rf", "\u202eid".encode()]
)
def test_unsafe_request_ids_are_replaced(url: str, hostile: bytes) -> None:
    response = httpx.post(
        url + "/v1/chat/completions", json=RAVEN, headers={"x-request-id": hostile}, timeout=10
    )
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = (
        re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" ([0-9.e+-]+)"
    )
    match = re.search(pattern, text)
    assert match, f"{name} {labels} not in metrics"
    return float(match.group(1))


def test_metrics_count_requests_completions_and_latency(url: str) -> None:
    before = httpx.get(url + "/metrics").text
    completed_before = (
        metric(before, "perception_llm_completions_total", outcome="completed")
        if 'outcome="completed"' in before
        else 0.0
    )
    for _ in range(3):
        assert complete(url, stream=True).status_code == 200
    httpx.post(
        url + "/v1/chat/completions",
        content=b"{bad",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    text = httpx.get(url + "/metrics").text
    assert (
        metric(text, "perception_llm_completions_total", outcome="completed")
        == completed_before + 3
    )
    assert (
        metric(text, "perception_llm_requests_total", route="/v1/chat/completions", status="400")
        >= 1
    )
    assert (
        metric(text, "perception_llm_requests_total", route="/v1/chat/completions", status="200")
        >= 3
    )
    assert metric(text, "perception_llm_time_to_first_token_seconds_count") >= 3
    assert metric(text, "perception_llm_prompt_tokens_sum") > 0
    assert metric(text, "perception_llm_active_streams") == 0


def test_upstream_errors_and_fallbacks_are_counted() -> None:
    with (
        FakeUpstream().serving() as fake,
        running_server(make_settings(upstream_base_url=fake.base_url)) as base,
    ):
        fake.script = [Reply(status=503), Reply(status=503), text_reply("ok")]
        assert complete(base, stream=True).status_code == 200  # both attempts fail: fallback spoken
        text = httpx.get(base + "/metrics").text
    assert metric(text, "perception_llm_upstream_errors_total", kind="status_5xx") == 2
    assert metric(text, "perception_llm_completions_total", outcome="fallback") == 1


def test_metrics_need_the_key_when_one_is_set() -> None:
    with running_server(make_settings(api_key="k")) as base:
        assert httpx.get(base + "/metrics").status_code == 401
        assert (
            httpx.get(base + "/metrics", headers={"Authorization": "Bearer k"}).status_code == 200
        )


def test_no_cors_unless_configured(url: str) -> None:
    preflight = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    assert (
        "access-control-allow-origin"
        not in httpx.options(url + "/v1/chat/completions", headers=preflight).headers
    )
    with running_server(make_settings(cors_origins=["https://app.example"])) as base:
        allowed = httpx.options(
            base + "/v1/chat/completions", headers={**preflight, "origin": "https://app.example"}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(base + "/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in other.headers


def test_json_logs_carry_ids_and_never_secrets() -> None:
    env = {
        **os.environ,
        "PERCEPTION_LLM_LOG_FORMAT": "json",
        "PERCEPTION_LLM_API_KEY": "top-secret-key",
        "PERCEPTION_LLM_REPLICA": "replica-b",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if match:
                break
        assert match
        base = f"http://127.0.0.1:{match.group(1)}"
        headers = {
            "Authorization": "Bearer top-secret-key",
            "x-request-id": "req-42",
            "conversation-id": "conv-9",
        }
        assert complete(base, headers, stream=True).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=20)
    records = [json.loads(line) for line in [*lines, *rest.splitlines()] if line.strip()]
    completion = next(r for r in records if r.get("event") == "completion")
    assert completion["request_id"] == "req-42" and completion["conversation_id"] == "conv-9"
    assert (
        completion["outcome"] == "completed"
        and completion["chunks"] > 0
        and completion["prompt_tokens"] > 0
    )
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert "top-secret-key" not in "".join(lines) + rest
    # Every line the server logs names the replica (logs of several replicas read apart).
    assert {r["replica"] for r in records if r["logger"] != "perception_llm.serve"} == {"replica-b"}


def test_replica_is_named_in_metrics_and_defaults_to_host_and_port() -> None:
    with running_server(make_settings(replica="pod-7")) as base:
        text = httpx.get(base + "/metrics").text
    assert 'perception_llm_replica_info{replica="pod-7"} 1.0' in text
    assert make_settings().replica_name(8123) == f"{socket.gethostname()}:8123"
    assert make_settings(replica="pod-7").replica_name(8123) == "pod-7"


def test_a_default_replica_name_is_always_a_valid_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` passes the default name to the app through the environment, where the setting's
    check reads it: a host name with odd characters must not stop start-up."""
    monkeypatch.setattr(socket, "gethostname", lambda: "box_1 (lab)")
    name = make_settings().replica_name(8000)
    assert name == "box_1--lab-:8000" and make_settings(replica=name).replica == name


@pytest.mark.parametrize("name", ["", "a b", "x\nforged line", "é", "a" * 129])
def test_a_replica_name_that_is_not_a_name_is_refused(name: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="replica"):
        make_settings(replica=name)
