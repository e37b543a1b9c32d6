"""One captured call as a stored row: the full parse, the privacy setting, redaction, JSON, and
each row's size (built in the capture writer thread, never on the event loop)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from perception import CapturePerception, Conversation, system_text_parts
from server.capture.privacy import reduce_parsed, reduce_prompt_messages
from server.capture.tool_mark import tool_mark
from server.redaction import Redactor

SUMMARY_CHARS = 160  # of each perceived value, in the timeline's summary column
MAX_STORED_BYTES = 1_000_000  # per JSON column of a call, UTF-8; bigger is replaced by a note


@dataclass
class CallSnapshot:
    """What a finished completion hands to the capture (taken on the event loop: references)."""

    request_id: str
    conversation_id: str | None
    started_at: float  # unix seconds
    template: str
    model: str
    stream: bool
    outcome: str
    ttft_ms: float | None
    total_ms: float
    prompt_tokens: int
    shared: bool
    emotion_repaired: bool
    error: str | None
    headers: dict[str, str]
    body: dict[str, Any]
    conversation: Conversation  # as parsed for the reply (without the instruction parts)
    prompt_messages: list[Any]
    dropped_turns: int
    perception_collapsed: bool
    reply_text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None


def stored_json(value: Any, redactor: Redactor) -> str:
    text = redactor.redact(json.dumps(value, ensure_ascii=False, default=str))
    # Bytes, not characters: 3.8 MB of emoji stored 8.4 MB per call under a character cap.
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_STORED_BYTES:  # a 4 MB body, again and again, must not fill the disk
        return json.dumps({"withheld": f"too large to keep: {size} bytes"})
    return text


def call_row(
    snapshot: CallSnapshot, redactor: Redactor, perception: CapturePerception, replica: str
) -> dict[str, Any]:
    """The stored row (in the writer thread): full parse, privacy, redaction, JSON; `replica`
    names the replica that served the call."""
    conversation = snapshot.conversation
    if not conversation.instructions:  # the reply's parse skips them; the store wants them
        parts = system_text_parts(conversation.messages)
        conversation = conversation.model_copy(update={"instructions": parts})
    parsed = reduce_parsed(conversation.model_dump(), perception)
    body = snapshot.body
    if perception != "full":
        body = {**body, "messages": conversation.messages, "perception_withheld": True}
    unknown = sorted({name for item in conversation.observations for name in item.extra})
    user_text = next(
        (
            m.get("content")
            for m in reversed(conversation.messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    row = {
        "request_id": snapshot.request_id,
        "replica": replica,
        "conversation_id": snapshot.conversation_id,
        "started_at": snapshot.started_at,
        "template": snapshot.template,
        "model": redactor.redact(snapshot.model),
        "stream": snapshot.stream,
        "mode": conversation.mode,
        "outcome": snapshot.outcome,
        "ttft_ms": snapshot.ttft_ms,
        "total_ms": snapshot.total_ms,
        "prompt_tokens": snapshot.prompt_tokens,
        "shared": snapshot.shared,
        "error": redactor.redact(snapshot.error) if snapshot.error else None,
        "issues": len(conversation.issues),
        "unknown_tags": ",".join(unknown),
        "user_text": redactor.cut(str(user_text or ""), 500),
        "perceived": stored_json(
            {
                name: redactor.cut(value, SUMMARY_CHARS)
                for name, value in {**parsed["latest"], **parsed["latest"]["extra"]}.items()
                if isinstance(value, str)
            },
            redactor,
        ),
        "headers": stored_json(snapshot.headers, redactor),
        "request": stored_json(body, redactor),
        "parsed": stored_json(parsed, redactor),
        "prompt": stored_json(
            {
                "template": snapshot.template,
                "prompt_tokens": snapshot.prompt_tokens,
                "dropped_turns": snapshot.dropped_turns,
                "perception_collapsed": snapshot.perception_collapsed,
                "messages": reduce_prompt_messages(snapshot.prompt_messages, perception),
            },
            redactor,
        ),
        "tool": tool_mark(snapshot.headers),
        "emotion_repaired": snapshot.emotion_repaired,
        "reply": stored_json(
            {
                "text": snapshot.reply_text,
                "tool_calls": snapshot.tool_calls,
                "finish_reason": snapshot.finish_reason,
            },
            redactor,
        ),
    }
    row["stored_bytes"] = sum(
        len(value.encode("utf-8", "surrogatepass"))
        for value in row.values()
        if isinstance(value, str)
    )
    return row
