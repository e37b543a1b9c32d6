"""The one scanner for Tavus' `<user_*>` tag markup, linear in the length of the text.

Every place that looks for perception markup in user-controlled text uses these patterns, so
"what counts as a tag" is defined once. The patterns cannot backtrack: each starts with a literal
`<` (found by the regex engine's fast prefix search), every repetition is possessive (`*+`, `++`,
`?+`, Python 3.11+), and the attribute run `[^<>]` stops at the next `<`, so a failed attempt never
rescans text that a later attempt reads. The cost is O(n) whatever the input: `"<"` followed by a
megabyte of spaces or `<user_a>` ten thousand times are both one pass.

A tag is `<`, optional whitespace, an optional `/`, optional whitespace, a name `user_[a-z0-9_]+`,
optional attributes on the same line, `>`; letter case is ignored (ASCII only, so Unicode case
folding never turns other letters into a tag). A *fragment* is `<`, whitespace, `/`,
whitespace, `user_` that does not complete a tag; values are cleaned of both
(see `neutralise_markup`).
"""

from __future__ import annotations

import re
from itertools import islice
from typing import NamedTuple

_TAG = r"<[ \t]*+(/?+)[ \t]*+(user_[a-z0-9_]++)(?:[ \t][^<>\n]*+)?+>"
TAG_RE = re.compile(_TAG, re.I | re.A)
# For neutralising values: any whitespace (newlines too) and an empty name suffix still count,
# because a model reading `<\nuser_x>` or `</user_` may well take it for markup.
# Tavus' `<additional_system_instructions>` wrapper (issue 22) is neutralised the same way: in a
# user turn it is something the user may have typed, and it must not read as Tavus' own.
# Whitespace here includes Unicode's (no-break, ideographic, em... spaces; `re.A` limits `\s` to
# ASCII), and a wrapper with no `>` is a fragment like `<user_`: both reached the model as
# markup (review of issue 23).
_SPACE = r"[\s\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_NAMES = r"user_|additional_system_instructions"
MARKUP_RE = re.compile(
    rf"<{_SPACE}*+(/?+){_SPACE}*+(user_[a-z0-9_]*+|additional_system_instructions)"
    rf"(?:{_SPACE}[^<>]*+)?+>"
    rf"|<{_SPACE}*+(/?+){_SPACE}*+({_NAMES})",
    re.I | re.A,
)


# Beyond this many `<` in one text, markup is neutralised by a literal substitution in C
# (`<user_x>` → `[user_x>`) instead of a Python call per tag: text that dense in markup is an
# attack, and the pretty form would cost ~0.5 µs per tag.
DENSE_MARKUP = 1024
_MARKUP_START_RE = re.compile(rf"<(?={_SPACE}*+/?+{_SPACE}*+(?:{_NAMES}))", re.I | re.A)


class Tag(NamedTuple):  # a tuple: built for every tag of every request, and cheapest to build
    """One `<user_*>` or `</user_*>` token and its span in the scanned text."""

    name: str  # lower-cased, e.g. "user_emotions"
    closing: bool
    start: int
    end: int


def scan_tags(text: str, limit: int | None = None) -> list[Tag]:
    """The complete tags in `text`, in order; at most `limit` of them."""
    if "<" not in text:
        return []
    return [
        Tag(name.lower(), bool(slash), *match.span())
        for match in islice(TAG_RE.finditer(text), limit)
        for slash, name in (match.groups(),)
    ]


def _neutral(match: re.Match[str]) -> str:
    if match.group(2) is not None:
        return f"[{match.group(1)}{match.group(2).lower()}]"
    return f"[{match.group(3)}{match.group(4).lower()}"


def neutralise_markup(text: str) -> str:
    """Perception markup (`<user_x>`, `</user_x>`, a dangling `<user_`, Tavus' wrapper
    `<additional_system_instructions>`) → `[user_x]` etc."""
    if "<" not in text:
        return text
    if text.count("<") > DENSE_MARKUP:
        return _MARKUP_START_RE.sub("[", text)
    return MARKUP_RE.sub(_neutral, text)
