"""Client-side helpers shared by the tests that read a streamed completion over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import httpx

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def stream(url: str, timeout: float = 20) -> list[Any]:
    """The JSON payloads of a streamed completion from `url` (a base URL), `[DONE]` checked."""
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json={**BODY, "stream": True}, timeout=timeout
    ) as response:
        assert response.status_code == 200
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def text_of(payloads: list[Any]) -> str:
    return "".join(
        p["choices"][0]["delta"].get("content") or "" for p in payloads if p.get("choices")
    )


def error_of(payloads: list[Any]) -> str | None:
    last = payloads[-1] if payloads else {}
    return last["error"]["message"] if "error" in last else None
