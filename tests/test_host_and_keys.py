"""Who may talk to the server: DNS-rebinding `Host` names on a keyless loopback server, short
keys on a public interface, and two keys at once for rotation (issue 23)."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.http.auth import MIN_PUBLIC_KEY_CHARS
from server.http.host_check import host_allowed, host_name
from tests.conftest import make_settings
from tests.live import running_server

ROTATED = "new-key-0123456789abcdef"
OLD = "old-key-0123456789abcdef"


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8000", "localhost"),
        ("LOCALHOST", "localhost"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("rebind.attacker.example:8000", "rebind.attacker.example"),
        ("", ""),
    ],
)
def test_host_name_drops_the_port(header: str, name: str) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("localhost:8000", True),
        ("app.localhost", True),
        ("127.0.0.1:8000", True),
        ("127.5.6.7", True),
        ("[::1]:8000", True),
        ("devbox.internal:8000", True),  # configured
        ("rebind.attacker.example", False),
        ("localhost.attacker.example", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
        # Review of issue 23: text after an IPv6 literal's bracket was ignored.
        ("[::1]rebind.attacker.example", False),
        ("[::1]:80.attacker.example", False),
        ("[::1]x80", False),
        ("localhost:80.attacker.example", False),
        ("[::1]:", True),
    ],
)
def test_only_loopback_and_configured_names_pass(header: str, allowed: bool) -> None:
    assert host_allowed(header, frozenset({"devbox.internal"})) is allowed


def test_a_rebound_page_cannot_read_captured_calls(tmp_path: object) -> None:
    # Issue 23, finding 5: `Host: rebind.attacker.example` read /v1/calls from a keyless server.
    settings = make_settings(capture=f"sqlite:///{tmp_path}/calls.db")
    with running_server(settings) as url:
        rebound = {"host": "rebind.attacker.example"}
        for path in ("/v1/calls", "/v1/models", "/playground"):
            answer = httpx.get(url + path, headers=rebound, timeout=10)
            assert answer.status_code == 400, path
            assert answer.json()["error"]["code"] == "host_not_allowed"
        completion = httpx.post(
            url + "/v1/chat/completions",
            headers=rebound,
            json={"messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert completion.status_code == 400
        assert httpx.get(url + "/v1/calls", timeout=10).status_code == 200  # 127.0.0.1:port
        assert httpx.get(url + "/healthz", headers=rebound, timeout=10).status_code == 200


@pytest.mark.parametrize(("host", "checked"), [("127.0.0.1", True), ("0.0.0.0", False)])
def test_insecure_changes_nothing_on_loopback(host: str, checked: bool) -> None:
    # Review of issue 23: `--insecure` (PERCEPTION_LLM_ALLOW_INSECURE, documented as allowing a
    # non-loopback host without a key) also switched off the Host check on a loopback server,
    # so a rebound page could read it again.
    settings = make_settings(allow_insecure=True, host=host, allowed_hosts=[])
    with TestClient(create_app(settings), base_url="http://rebind.attacker.example") as client:
        assert client.get("/v1/models").status_code == (400 if checked else 200)


def test_a_keyed_server_answers_any_host() -> None:
    with running_server(make_settings(api_key=ROTATED)) as url:
        answer = httpx.get(
            url + "/v1/models",
            headers={"host": "perception.example", "authorization": f"Bearer {ROTATED}"},
            timeout=10,
        )
        assert answer.status_code == 200


def test_two_keys_are_valid_during_a_rotation() -> None:
    with running_server(make_settings(api_key=ROTATED, api_key_previous=OLD)) as url:
        for key, status in ((ROTATED, 200), (OLD, 200), ("wrong-key-0123456789", 401)):
            answer = httpx.get(
                url + "/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=10
            )
            assert answer.status_code == status, key


def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPTION_LLM_")}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        check=False,
    )


@pytest.mark.parametrize("variable", ["PERCEPTION_LLM_API_KEY", "PERCEPTION_LLM_API_KEY_PREVIOUS"])
def test_a_short_key_is_refused_on_a_public_interface(variable: str) -> None:
    env = {"PERCEPTION_LLM_API_KEY": ROTATED, variable: "abc"}
    result = serve("--host", "0.0.0.0", **env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"perception-llm: error: {variable} has 3 characters; a key on a public interface needs "
        f"at least {MIN_PUBLIC_KEY_CHARS}: generate one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
