"""What the capture store keeps of perception, by `PERCEPTION_LLM_CAPTURE_PERCEPTION`.

Perception can hold guesses about a person's appearance, and a screen share whatever was on the
screen. `full` keeps everything; `shapes` keeps which fields were present and their lengths;
`no_screen` keeps everything but screen-share text. In both reduced modes the stored request is
the conversation with perception removed (what the parser returns as `messages`), and the
perception block of the stored prompt is withheld; the reply is stored as the client got it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from server.capture.tool_mark import TOOL_HEADER

CapturePerception = Literal["full", "shapes", "no_screen"]
PERCEPTION_FIELDS = ("appearance", "emotions", "screenshare", "visual_scene", "audio")
_FENCE_OPEN, _FENCE_CLOSE, _FENCE_END = "\u27e6perception ", "\u27e7", "\u27e6/perception "


def withheld(value: str) -> str:
    return f"[withheld: {len(value)} characters]"


def _reduce_fields(fields: dict[str, Any], mode: CapturePerception) -> dict[str, Any]:
    names = PERCEPTION_FIELDS if mode == "shapes" else ("screenshare",)
    reduced = dict(fields)
    for name in names:
        if isinstance(reduced.get(name), str):
            reduced[name] = withheld(reduced[name])
    extra = reduced.get("extra")
    if mode == "shapes" and isinstance(extra, dict):
        reduced["extra"] = {key: withheld(str(value)) for key, value in extra.items()}
    return reduced


def reduce_parsed(parsed: dict[str, Any], mode: CapturePerception) -> dict[str, Any]:
    """The parse result with perception values reduced as `mode` says."""
    if mode == "full":
        return parsed
    return {
        **parsed,
        "latest": _reduce_fields(parsed["latest"], mode),
        "observations": [_reduce_fields(item, mode) for item in parsed["observations"]],
    }


def without_fenced_perception(text: str) -> str:
    """`text` with the body of every fenced perception block withheld (markers kept)."""
    parts, position = [], 0
    while True:
        start = text.find(_FENCE_OPEN, position)
        opened = text.find(_FENCE_CLOSE, start) if start >= 0 else -1
        end = text.find(_FENCE_END, opened) if opened >= 0 else -1
        if end < 0:
            break
        parts.append(text[position : opened + 1])
        parts.append(f"\n{withheld(text[opened + 1 : end])}\n")
        position = end
    parts.append(text[position:])
    return "".join(parts)


def reduce_prompt_messages(messages: list[Any], mode: CapturePerception) -> list[Any]:
    if mode == "full":
        return messages
    reduced = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            message = {**message, "content": without_fenced_perception(message["content"])}
        reduced.append(message)
    return reduced


# Request headers worth keeping (what Tavus' client says about itself); never credentials.
HEADER_ALLOW_LIST = frozenset(
    {
        "conversation-id",
        "conversation_id",
        "x-conversation-id",
        "content-type",
        "user-agent",
        "x-request-id",
        "x-prompt-template",
        "x-stainless-lang",
        "x-stainless-package-version",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "x-stainless-os",
        "x-stainless-arch",
        "x-stainless-retry-count",
        "x-stainless-read-timeout",
        TOOL_HEADER,  # which of our own tools sent the call (issue 25)
    }
)


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() in HEADER_ALLOW_LIST}
