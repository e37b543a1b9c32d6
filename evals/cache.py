"""The reply cache: a reply (or a judge's verdict) is reused when everything it depends on is the
same — the target, the model, the exact messages the model got, the sampling parameters and the
sample index — so a rerun of an unchanged suite makes no model or judge call.

The fence nonce is the one part of a prompt that changes on every request by design (it keeps
user text from closing the perception fence); it is replaced by a placeholder in the key, or no
prompt would ever hit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from prompts.fence import MARKER_RE

# Body fields that change what a model samples; everything else (stream, prompt) does not.
SAMPLING_FIELDS = (
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop",
    "frequency_penalty", "presence_penalty", "logit_bias", "response_format", "tools",
    "tool_choice", "reasoning_effort",
)  # fmt: skip
PLACEHOLDER = "{nonce}"


def without_nonce(messages: list[Any]) -> str:
    """The messages as canonical JSON, each fence nonce replaced by a placeholder."""
    text = json.dumps(messages, ensure_ascii=False, sort_keys=True)
    for nonce in set(MARKER_RE.findall(text)):
        text = text.replace(nonce, PLACEHOLDER)
    return text


def digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(parts, ensure_ascii=False, sort_keys=True).encode("utf-8")
    ).hexdigest()


def reply_key(
    target: str, body: dict[str, Any], prompt_messages: list[Any] | None, sample: int
) -> str:
    """`prompt_messages`: what the model got (from the render API); None when the endpoint
    cannot say, and then the request's messages and its template choice stand in."""
    sent = (
        without_nonce(prompt_messages)
        if prompt_messages is not None
        else without_nonce([body.get("prompt"), body["messages"]])
    )
    return digest(
        {
            "kind": "reply",
            "target": target,
            "model": body["model"],
            "messages": sent,
            "sampling": {k: body[k] for k in SAMPLING_FIELDS if k in body},
            "sample": sample,
        }
    )


def judge_key(url: str, model: str, messages: list[Any], sample: int) -> str:
    return digest(
        {"kind": "judge", "url": url, "model": model, "messages": messages, "sample": sample}
    )
