"""`GET /v1/prompts`, `POST /v1/prompts/render` and template choice per request (in process)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from tests.conftest import SAMPLES, load_sample, make_settings

RAVEN = load_sample("raven0-documented")


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(prompt="minimal"))) as test_client:
        yield test_client


def test_list_prompts(client: TestClient) -> None:
    listing = client.get("/v1/prompts").json()
    assert listing["default"] == "minimal"
    assert [t["name"] for t in listing["data"]] == ["default", "minimal", "passthrough"]
    assert all(t["description"] for t in listing["data"])


def test_render_returns_messages_and_token_estimate(client: TestClient) -> None:
    data = client.post("/v1/prompts/render", json={**RAVEN, "prompt": "default"}).json()
    assert data["prompt"] == "default" and data["mode"] == "raven"
    assert data["prompt_tokens"] > 0 and data["budget_tokens"] == 5000
    assert data["messages"][0] == RAVEN["messages"][0]
    assert "<user_" not in json.dumps(data["messages"])
    assert "What you can see and hear of the user right now" in data["messages"][-1]["content"]


@pytest.mark.parametrize(
    ("body_prompt", "header", "query", "expected"),
    [
        ("default", "passthrough", "passthrough", "default"),
        (None, "passthrough", "default", "passthrough"),
        (None, None, "default", "default"),
        (None, None, None, "minimal"),  # the setting
    ],
)
def test_choice_precedence(
    client: TestClient,
    body_prompt: str | None,
    header: str | None,
    query: str | None,
    expected: str,
) -> None:
    body: dict[str, Any] = dict(RAVEN)
    if body_prompt:
        body["prompt"] = body_prompt
    response = client.post(
        "/v1/prompts/render",
        json=body,
        headers={"X-Prompt-Template": header} if header else {},
        params={"prompt": query} if query else {},
    )
    assert response.json()["prompt"] == expected


@pytest.mark.parametrize("path", ["/v1/prompts/render", "/v1/chat/completions"])
def test_unknown_template_is_a_400_listing_the_available(client: TestClient, path: str) -> None:
    response = client.post(path, json={**RAVEN, "prompt": "fancy"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "prompt" and error["code"] == "unknown_prompt"
    assert "default, minimal, passthrough" in error["message"]


def test_unknown_template_in_header_or_query_is_a_400_too(client: TestClient) -> None:
    assert (
        client.post(
            "/v1/chat/completions", json=RAVEN, headers={"X-Prompt-Template": "nope"}
        ).status_code
        == 400
    )
    assert client.post("/v1/chat/completions?prompt=nope", json=RAVEN).status_code == 400


def test_prompt_must_be_a_string(client: TestClient) -> None:
    response = client.post("/v1/prompts/render", json={**RAVEN, "prompt": 3})
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"


def test_render_validates_like_chat_completions(client: TestClient) -> None:
    response = client.post("/v1/prompts/render", json={"messages": []})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"


def test_user_prompts_dir_and_a_broken_default_fail_fast(tmp_path: Path) -> None:
    (tmp_path / "short.j2").write_text(
        "---\ndescription: Short.\n---\n{% block instructions %}Fence {{ fence.open }}{% endblock %}"
        "{% block perception %}{{ fence.open }}{{ latest | length }}{{ fence.close }}{% endblock %}\n"
    )
    with TestClient(create_app(make_settings(prompts_dir=tmp_path, prompt="short"))) as client:
        data = client.post("/v1/prompts/render", json=RAVEN).json()
        assert data["prompt"] == "short"
        assert re.match(
            r"\u27e6perception (\w+)\u27e73\u27e6/perception \1\u27e7\n\n",
            data["messages"][-1]["content"],
        )
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PERCEPTION_LLM_PROMPT": "nope", "PATH": ""},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("perception-llm: error: unknown prompt template 'nope'")


def test_cli_render() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "render",
            str(SAMPLES / "raven1-audio.json"),
            "--prompt",
            "minimal",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["prompt"] == "minimal"
    assert (
        "voice: The user sounded sarcastic when they said this" in data["messages"][-1]["content"]
    )
    assert data["messages"][-1]["content"].endswith("Wow, I love Mondays.")
