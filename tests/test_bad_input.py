"""Bad input never causes a 5xx, a crash or a hang: schemathesis over the OpenAPI schema
(bounded examples, so CI stays fast), and hand-written nasty bodies over real sockets."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import make_settings
from tests.live import running_server


@pytest.fixture(scope="module")
def live() -> Iterator[str]:
    with running_server(make_settings(max_body_bytes=256 * 1024)) as url:
        yield url


def test_no_server_errors_for_generated_requests(live: str) -> None:
    """Every operation of the OpenAPI schema, 40 generated requests each (derandomized)."""
    schema = schemathesis.openapi.from_url(live + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/chat/completions",
        "/v1/perception/parse",
        "/v1/prompts/render",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def no_5xx(case: Any) -> None:
            response = case.call(base_url=live, timeout=10)
            assert response.status_code < 500, (
                case.method,
                case.path,
                case.body,
                response.text[:300],
            )
            if response.status_code >= 400:
                assert {"message", "type", "param", "code"} <= set(response.json()["error"])

        no_5xx()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HANDWRITTEN: dict[str, tuple[bytes, dict[str, str], int]] = {
    "wrong types everywhere": (
        json.dumps(
            {
                "model": [],
                "messages": [{"role": "user", "content": {"a": 1}}],
                "stream": 1,
                "n": "2",
            }
        ).encode(),
        {},
        400,
    ),
    "role is a number": (json.dumps({"messages": [{"role": 7}]}).encode(), {}, 400),
    "huge string within the body limit": (
        json.dumps({"messages": [{"role": "user", "content": "x" * 200_001}]}).encode(),
        {},
        400,
    ),
    "deeply nested JSON": (
        (
            '{"messages": [{"role": "user", "content": "hi"}], "extra": ' + nested(50_000) + "}"
        ).encode(),
        {},
        400,
    ),
    "invalid UTF-8": (b'{"messages": [{"role": "user", "content": "\xc3\x28"}]}', {}, 400),
    "wrong content type": (
        b"messages=hello",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
    ),
    "JSON sent as text/plain (a cross-site form post)": (
        b'{"messages": [{"role": "user", "content": "hi"}]}',
        {"content-type": "text/plain"},
        415,
    ),
    "null bytes and lone surrogates": (
        b'{"messages": [{"role": "user", "content": "a\\u0000b\\ud800c"}]}',
        {},
        200,
    ),
    "NaN": (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', {}, 400),
    "Infinity": (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": -Infinity}', {}, 400),
    "a number too large for a float": (
        b'{"messages": [{"role": "user", "content": "hi"}], "top_p": 1e999}',
        {},
        400,
    ),
    "a 5,000-digit integer": (
        b'{"messages": [{"role": "user", "content": "hi"}], "n": ' + b"7" * 5000 + b"}",
        {},
        400,
    ),
    "900 levels deep with a lone surrogate": (
        b'{"messages": [{"role": "user", "content": "hi"}], "x": '
        + b"[" * 900
        + b'"\\ud800"'
        + b"]" * 900
        + b"}",
        {},
        400,
    ),
    "duplicate keys": (
        b'{"messages": [], "messages": [{"role": "user", "content": "hi"}]}',
        {},
        200,
    ),
    "empty object": (b"{}", {}, 400),
    "whitespace only": (b"   \n ", {}, 400),
}


@pytest.mark.parametrize("name", list(HANDWRITTEN))
def test_handwritten_bad_bodies(live: str, name: str) -> None:
    body, headers, status = HANDWRITTEN[name]
    response = httpx.post(
        live + "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=20,
    )
    assert response.status_code == status, response.text[:300]
    if status in (400, 415):
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path", ["/v1/perception/parse", "/v1/prompts/render"])
def test_other_endpoints_survive_nesting_and_garbage(live: str, path: str) -> None:
    for body in (
        b'{"messages": ' + nested(50_000).encode() + b"}",
        b"\xff\xfe",
        b'{"messages": [1, "x", null, {"role": {}}]}',
    ):
        response = httpx.post(
            live + path, content=body, headers={"content-type": "application/json"}, timeout=20
        )
        assert response.status_code < 500, (body[:40], response.text[:200])


def test_a_half_sent_body_does_not_hang_the_server(live: str) -> None:
    port = int(live.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b'POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"messages":'
        )
        sock.shutdown(socket.SHUT_WR)  # the client gives up mid-body
        sock.recv(1024)  # the server notices and closes or answers; it does not hang
    assert httpx.get(live + "/healthz", timeout=5).status_code == 200
