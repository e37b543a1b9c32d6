"""Cheap, offline token estimates (Tavus' own rule of thumb: 1 token ≈ 4 characters).

Good enough for budgets and usage reports; no tokenizer download, no network, microseconds.
"""

from __future__ import annotations

from typing import Any

# OpenAI's chat format adds a few tokens of framing per message (role, separators).
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """Tokens in `text`, rounded up; 0 only for the empty string."""
    return (len(text) + 3) // 4


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part.get("text") or "") if isinstance(part, dict) else 0 for part in content)
    return 0


def estimate_message_tokens(messages: list[Any]) -> int:
    """Tokens of a chat `messages` list, framing included (tool calls counted by their JSON)."""
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        chars = _content_chars(message.get("content"))
        for call in message.get("tool_calls") or ():
            function = call.get("function", {}) if isinstance(call, dict) else {}
            chars += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
        total += (chars + 3) // 4 + MESSAGE_OVERHEAD_TOKENS
    return total
