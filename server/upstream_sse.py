"""Reading an OpenAI-compatible upstream's SSE lines into `ResponseEvent`s (pure functions).

We relay raw lines instead of letting the SDK build a pydantic model per chunk: one
`json.loads` per chunk, and the delta dict passes through as it came (tool-call fragments keep
their `index`, `id`, `type` and `function` pieces exactly).
"""

from __future__ import annotations

import json
from typing import Any

from server.errors import UpstreamError
from server.responders import ResponseEvent

DONE = "[DONE]"


class MalformedChunkError(UpstreamError):
    """The upstream sent a data line that is not a JSON object."""


def data_payload(line: str) -> str | None:
    """The payload of a `data:` line; None for comments, `event:`/`id:` fields and blank lines."""
    if not line.startswith("data:"):
        return None
    return line[5:].strip()


def _clean_delta(delta: Any) -> dict[str, Any] | None:
    if not isinstance(delta, dict):
        return None
    cleaned = {k: v for k, v in delta.items() if v is not None and k != "role"}
    if cleaned.get("content") == "" and len(cleaned) == 1:
        return None  # the role-only opening chunk many servers send
    return cleaned or None


def chunk_events(payload: str) -> list[ResponseEvent]:
    """Events in one upstream chunk; raises UpstreamError for error events or garbage."""
    try:
        chunk = json.loads(payload)
    except ValueError:
        raise MalformedChunkError(f"upstream sent a malformed chunk: {payload[:80]!r}") from None
    if not isinstance(chunk, dict):
        raise MalformedChunkError(f"upstream sent a malformed chunk: {payload[:80]!r}")
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamError(f"upstream error: {message}")
    usage = chunk.get("usage") if isinstance(chunk.get("usage"), dict) else None
    events = []
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue  # we ask for one choice; ignore any other
        delta = _clean_delta(choice.get("delta"))
        finish = choice.get("finish_reason")
        if delta is not None or finish:
            events.append(ResponseEvent(delta=delta, finish_reason=finish or None))
    if usage is not None:
        events.append(ResponseEvent(usage=usage))
    return events
