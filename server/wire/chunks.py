"""Builds the JSON of `chat.completion.chunk` and `chat.completion` objects.

A stream's chunks share one `id`, `created` and `model` (clients such as openai-python's
stream helpers rely on it), so the envelope is rendered once per stream and each chunk only
serialises its own choice: that keeps per-token work to one small `json.dumps`.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from server.wire.sse import compact_json


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


class ChunkEncoder:
    """Renders the chunks of one streamed completion."""

    def __init__(self, model: str, completion_id: str | None = None, created: int | None = None):
        self.completion_id = completion_id or new_completion_id()
        self.created = int(time.time()) if created is None else created
        self.model = model
        self._prefix = (
            f'{{"id":{compact_json(self.completion_id)},"object":"chat.completion.chunk",'
            f'"created":{self.created},"model":{compact_json(model)},"choices":'
        )

    def choice(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        """A chunk carrying one delta of choice 0."""
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._prefix + "[" + compact_json(choice) + "]}"

    def usage(self, usage: dict[str, Any]) -> str:
        """The extra chunk sent when `stream_options.include_usage` is set: no choices."""
        return self._prefix + '[],"usage":' + compact_json(usage) + "}"

    def completion(
        self, message: dict[str, Any], finish_reason: str, usage: dict[str, Any]
    ) -> dict[str, Any]:
        """The non-streaming `chat.completion` object with the same id, created and model."""
        return {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": usage,
        }


def merge_tool_call(calls: dict[int, dict[str, Any]], fragment: dict[str, Any]) -> None:
    """Merge one streamed tool-call fragment into `calls`, by its index (as OpenAI clients do)."""
    index = fragment.get("index", len(calls))
    call = calls.setdefault(
        index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if fragment.get("id"):
        call["id"] = fragment["id"]
    if fragment.get("type"):
        call["type"] = fragment["type"]
    function = fragment.get("function") or {}
    if function.get("name"):
        call["function"]["name"] += function["name"]
    if function.get("arguments"):
        call["function"]["arguments"] += function["arguments"]
