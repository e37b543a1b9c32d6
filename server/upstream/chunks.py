"""An OpenAI-compatible upstream's stream chunks → `ResponseEvent`s (pure functions).

We relay chunks instead of letting the SDK build a pydantic model per chunk: one `json.loads` per
chunk, and tool-call fragments keep their `index`, `id`, `type` and `function` pieces exactly.
Only OpenAI-shaped values are relayed: a `content` that is a number or an object, a
`finish_reason` that is not a string, `tool_calls` that are not a list of fragments, are dropped
here, so a misbehaving upstream can never make us send a client something its SDK chokes on.
"""

from __future__ import annotations

import json
from typing import Any

from server.errors import MalformedChunkError, UpstreamErrorEvent
from server.responders.base import ResponseEvent

_TEXT_FIELDS = ("content", "refusal", "reasoning_content")


def _strings(source: Any, names: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(source, dict):
        return {}
    return {name: source[name] for name in names if isinstance(source.get(name), str)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tool_call_fragment(fragment: Any) -> dict[str, Any] | None:
    if not isinstance(fragment, dict):
        return None
    index = fragment.get("index")
    if index is not None and not _is_int(index):
        return None
    clean: dict[str, Any] = _strings(fragment, ("id", "type"))
    if index is not None:
        clean["index"] = index
    function = _strings(fragment.get("function"), ("name", "arguments"))
    if function:
        clean["function"] = function
    return clean if set(clean) - {"index"} else None


def clean_delta(delta: Any) -> dict[str, Any] | None:
    """The OpenAI-shaped part of a choice delta, without `role`; None when nothing is left."""
    if not isinstance(delta, dict):
        return None
    clean: dict[str, Any] = _strings(delta, _TEXT_FIELDS)
    if isinstance(delta.get("tool_calls"), list):
        fragments = [f for f in map(_tool_call_fragment, delta["tool_calls"]) if f is not None]
        if fragments:
            clean["tool_calls"] = fragments
    function_call = _strings(delta.get("function_call"), ("name", "arguments"))
    if function_call:
        clean["function_call"] = function_call
    if clean.get("content") == "" and len(clean) == 1:
        return None  # the role-only opening chunk many servers send
    return clean or None


def is_speakable(event: ResponseEvent) -> bool:
    """True when the event carries something for the client: text or a tool call."""
    delta = event.delta or {}
    return bool(delta.get("content") or delta.get("tool_calls") or delta.get("function_call"))


def _usage(value: Any) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    counts = {k: v for k, v in value.items() if _is_int(v) and 0 <= v < 2**53}
    return counts or None


# What an error keeps of the upstream's words: long enough to hold any key whole, so the
# redaction where it is relayed (server/upstream/failures.py) sees every key before its cut.
WORDS = 8192


def chunk_events(payload: str) -> list[ResponseEvent]:
    """Events in one upstream chunk; raises UpstreamError for error events or garbage."""
    try:
        chunk = json.loads(payload)
    except (ValueError, RecursionError):
        raise MalformedChunkError(f"upstream sent a malformed chunk: {payload[:WORDS]!r}") from None
    if not isinstance(chunk, dict):
        raise MalformedChunkError(f"upstream sent a malformed chunk: {payload[:WORDS]!r}")
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise UpstreamErrorEvent(f"upstream error: {str(message)[:WORDS]}")
    events = []
    choices = chunk.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue  # we ask for one choice; ignore any other
        delta = clean_delta(choice.get("delta"))
        finish = choice.get("finish_reason")
        finish = finish if isinstance(finish, str) and finish else None
        if delta is not None or finish:
            events.append(ResponseEvent(delta=delta, finish_reason=finish))
    usage = _usage(chunk.get("usage"))
    if usage is not None:
        events.append(ResponseEvent(usage=usage))
    return events
