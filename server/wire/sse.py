"""Server-sent-event framing for the OpenAI stream, as pure functions that build bytes.

OpenAI's wire format is narrower than SSE: every event is a single `data: <compact json>` line
followed by a blank line, the stream ends with `data: [DONE]`, and there are no `id:`, `event:`
or `retry:` fields. Keep-alives are comment lines, which every SSE client ignores.
The socket side lives in `sse_response.py`, which writes these bytes untouched.
"""

from __future__ import annotations

import json
from typing import Any

DONE_FRAME = b"data: [DONE]\n\n"
KEEPALIVE_FRAME = b": keep-alive\n\n"  # a comment line: every SSE client ignores it

# json.dumps(ensure_ascii=False) leaves these raw; some SSE/line decoders (anything built on
# str.splitlines) treat them as line breaks, which would split a data line in two.
_LINE_BREAKING = ("\u0085", "\u2028", "\u2029")


def compact_json(obj: Any) -> str:
    """JSON without spaces, UTF-8 kept readable, and no character a decoder may split on."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for char in _LINE_BREAKING:
        if char in text:
            text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def data_event(payload: str) -> bytes:
    """One `data:` event; `payload` must be single-line (compact JSON always is)."""
    return b"data: " + payload.encode("utf-8") + b"\n\n"
