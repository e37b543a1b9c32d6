"""What the capture store keeps of perception, by `PERCEPTION_LLM_CAPTURE_PERCEPTION`.

Perception can hold guesses about a person's appearance, and a screen share whatever was on the
screen. `full` keeps everything; `shapes` keeps which fields were present and their lengths;
`no_screen` keeps everything but screen-share text. Which field each mode keeps is the field
registry's (`perception/fields.py`): a field it does not list, or lists as sensitive without
naming the mode, is withheld, and so are tags no row names (`extra`). In both reduced modes the
stored request is the conversation with perception removed (what the parser returns as
`messages`), and the perception block of the stored prompt is withheld; the reply is stored as
the client got it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perception.fields import CapturePerception, field_named
from prompts.fence import fenced_bodies
from server.capture.tool_mark import TOOL_HEADER

# Keys of a parsed snapshot/observation that are not perceived values.
_NOT_PERCEIVED = frozenset({"extra", "message_index", "source"})


def withheld(value: str) -> str:
    return f"[withheld: {len(value)} characters]"


def _kept(name: str, mode: CapturePerception) -> bool:
    """Whether field `name` is stored in the clear under `mode`: as its registry row says, and
    never for a name no row knows (a field added to the models but not the registry)."""
    field = field_named(name)
    return mode == "full" or (field is not None and field.kept_in_clear(mode))


def _reduce_fields(fields: dict[str, Any], mode: CapturePerception) -> dict[str, Any]:
    reduced = dict(fields)
    for name, value in fields.items():
        if name not in _NOT_PERCEIVED and isinstance(value, str) and not _kept(name, mode):
            reduced[name] = withheld(value)
    extra = reduced.get("extra")
    # A tag no row names may be anything (a screen's text under a new name): like a field the
    # registry does not know, it is kept only by `full`.
    if mode != "full" and isinstance(extra, dict):
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
    for start, end in fenced_bodies(text):
        parts.append(text[position:start])
        parts.append(f"\n{withheld(text[start:end])}\n")
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
