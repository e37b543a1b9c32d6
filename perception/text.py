"""Message content access and perception value cleaning.

Content may be a string, null, or an OpenAI array of parts; `message_text` reads the text of any
of them and `with_text` writes cleaned text back without losing non-text parts (images etc.).
`clean_value` is applied to every perception value: it trims, folds whitespace (so how Tavus
splits lines inside a tag never changes a value), removes invisible and direction-control
characters that could hide text from a reviewer but not from a model, neutralises perception
markup nested inside a value, and caps the length.
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple

from perception.tags import neutralise_markup

_INVISIBLE_RANGES = (
    (0x0000, 0x0008),  # C0 controls (tab and newline are whitespace, folded below)
    (0x000B, 0x000C),
    (0x000E, 0x001F),
    (0x007F, 0x009F),  # DEL and C1 controls
    (0x00AD, 0x00AD),  # soft hyphen
    (0x061C, 0x061C),  # Arabic letter mark (bidi)
    (0x180E, 0x180E),  # Mongolian vowel separator
    (0x200B, 0x200F),  # zero-width space/joiners, LRM, RLM
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x2064),  # word joiner, invisible operators
    (0x2066, 0x2069),  # bidi isolates
    (0xFEFF, 0xFEFF),  # zero-width no-break space / BOM
    (0xFFF9, 0xFFFB),  # interlinear annotation controls
    (0xE0000, 0xE007F),  # Unicode tag characters ("ASCII smuggling")
)
_INVISIBLE_TABLE: dict[int, None] = {
    code: None for start, end in _INVISIBLE_RANGES for code in range(start, end + 1)
}
_INVISIBLE_RE = re.compile(
    "[" + "".join(f"{re.escape(chr(s))}-{re.escape(chr(e))}" for s, e in _INVISIBLE_RANGES) + "]"
)


class CleanedValue(NamedTuple):
    text: str
    truncated_from: int | None  # original length when the cap cut it
    had_nested_markup: bool


def strip_invisible(text: str) -> str:
    if _INVISIBLE_RE.search(text) is None:  # the common case costs one regex scan
        return text
    return text.translate(_INVISIBLE_TABLE)


# The history is resent with every request: values seen a moment ago are remembered.
CACHED_VALUE_CHARS = 4096  # with 2,048 entries: at most ~16 MB however hostile the texts


def clean_value(raw: str, max_chars: int) -> CleanedValue:
    """Make one perception value safe to store and show (see module docstring)."""
    if len(raw) <= CACHED_VALUE_CHARS:
        return _clean_value_cached(raw, max_chars)
    return _clean_value(raw, max_chars)


@functools.lru_cache(maxsize=2048)
def _clean_value_cached(raw: str, max_chars: int) -> CleanedValue:
    return _clean_value(raw, max_chars)


def _clean_value(raw: str, max_chars: int) -> CleanedValue:
    text = " ".join(strip_invisible(raw).split())
    truncated_from = None
    if len(text) > max_chars:
        # Cut before neutralising, so the cost is bounded by the cap whatever the input holds;
        # neutralising never lengthens text, and a tag cut in half is caught as a fragment.
        truncated_from = len(text)
        text = text[: max_chars - 1].rstrip() + "…"
    nested = False
    if "<" in text:
        neutral = neutralise_markup(text)
        nested, text = neutral != text, neutral
    return CleanedValue(text, truncated_from, nested)


def message_text(content: Any) -> str | None:
    """The text of a message's content, or None when it is not a readable shape."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return None


def with_text(message: dict[str, Any], text: str) -> dict[str, Any]:
    """A copy of `message` whose text is `text`; non-text parts of an array are kept in place."""
    content = message.get("content")
    if isinstance(content, list):
        others = [
            part for part in content if not (isinstance(part, dict) and part.get("type") == "text")
        ]
        if others:
            return {**message, "content": [{"type": "text", "text": text}, *others]}
    return {**message, "content": text}
