"""Tavus' second wire layout: perception and Tavus' rules arriving as user-role messages.

Public code written against live calls (github.com/harrydaihaolin/Jarvis, a raven-1 persona;
proxy/src/translate.test.js and conversation.test.js) shows user messages that are only
`<user_emotions>\n…\n</user_emotions>`, only `<additional_system_instructions><user_appearance>\n…
\n</user_appearance></additional_system_instructions>`, only
`<additional_system_instructions>respond in english</additional_system_instructions>`, or only
`<user_audio_analysis>…</user_audio_analysis>` followed by a separate user message with the speech.
Another integration saw the same content as system messages (tests/fixtures/perception/
user-role-layout.json records both); a backend must take either, in any mix.

A user message is perception here only when *all* of it is: perception blocks (each closed, any
whitespace around and inside the tags), optionally inside balanced wrappers, and wrapped text
that is one rule of `perception.tavus_rules`' closed vocabulary. Anything else is a user turn as
before (the templates neutralise its markup), and a wrapper in it is reported
(`unrecognised_wrapper`). User-role text can be typed by the user, so what this grants is
bounded: forged perception is still fenced data, and a forged rule can only add our own
canonical rule text. Every scan is linear (literal-led patterns, possessive repetitions).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from perception.fields import AUDIO_TAG
from perception.models import RuleKind
from perception.raven import MAX_TAGS, Block, split_blocks
from perception.tags import scan_tags
from perception.tavus_rules import canonical_rule

WRAPPER = "additional_system_instructions"
WRAPPER_RE = re.compile(r"<[ \t\n]*+(/?+)[ \t\n]*+additional_system_instructions[ \t\n]*+>", re.I)
# Tavus sends one or two wrappers per message; past this many a message is a user turn (the work
# per message stays bounded: each wrapped piece is looked up in the rule vocabulary).
MAX_SEGMENTS = 16


@dataclass(frozen=True, slots=True)
class UserPerception:
    """A user message that is perception only (see module docstring)."""

    visual: list[Block]  # perception blocks other than audio analyses, in order
    audio: list[str]  # raw values of the audio analyses, in order
    rules: list[tuple[RuleKind, str]]  # recognised rules, canonical text
    wrapped: bool  # some of it was inside <additional_system_instructions>


def _perception_only(text: str) -> list[Block] | None:
    """The blocks of `text` when it is nothing but closed perception blocks, else None."""
    tags = scan_tags(text, MAX_TAGS + 1)
    if not tags or len(tags) > MAX_TAGS or text[: tags[0].start].strip():
        return None
    blocks, stray = split_blocks(text, tags)
    if stray or any(not block.closed or block.stray_closers for block in blocks):
        return None
    position = tags[0].start
    for block in blocks:  # only whitespace between and after blocks
        if text[position : block.start].strip():
            return None
        position = block.end
    return None if text[position:].strip() else blocks


def _segments(text: str) -> list[tuple[bool, str]] | None:
    """`text` cut at balanced, unnested wrappers: (wrapped, piece); None when unbalanced."""
    pieces: list[tuple[bool, str]] = []
    position = 0
    inside = False
    for count, match in enumerate(WRAPPER_RE.finditer(text)):
        closing = bool(match.group(1))
        if closing != inside or count >= 2 * MAX_SEGMENTS:
            return None
        pieces.append((inside, text[position : match.start()]))
        position = match.end()
        inside = not inside
    if inside:
        return None
    pieces.append((False, text[position:]))
    return [(wrapped, piece) for wrapped, piece in pieces if wrapped or piece.strip()]


# Tavus resends the whole history with every request: a perception message split a moment ago
# is remembered (short texts; the result is frozen and only read), as for system messages.
CACHED_TEXT_CHARS = 4096  # with 2,048 entries: at most ~16 MB however hostile the texts


def split_user_perception(text: str) -> UserPerception | None:
    """The perception of a perception-only user message; None when it is a user turn."""
    if not text.lstrip().startswith("<") or text.count("<") > MAX_TAGS:
        return None  # the common case (speech), or far more markup than Tavus ever sends
    return _split_cached(text) if len(text) <= CACHED_TEXT_CHARS else _split(text)


@functools.lru_cache(maxsize=2048)
def _split_cached(text: str) -> UserPerception | None:
    return _split(text)


def _split(text: str) -> UserPerception | None:
    segments = _segments(text)
    if not segments:
        return None
    blocks: list[Block] = []
    rules: list[tuple[RuleKind, str]] = []
    wrapped = False
    for is_wrapped, piece in segments:
        wrapped = wrapped or is_wrapped
        found = _perception_only(piece)
        if found is not None:
            blocks.extend(found)
            continue
        rule = canonical_rule(piece) if is_wrapped else None
        if rule is None:
            return None
        rules.append(rule)
    if not blocks and not rules:
        return None
    visual = [block for block in blocks if block.name != AUDIO_TAG]
    audio = [block.value for block in blocks if block.name == AUDIO_TAG]
    return UserPerception(visual, audio, rules, wrapped)


def has_wrapper(text: str) -> bool:
    """Whether a user turn mentions the wrapper tag at all (reported, then neutralised)."""
    return "<" in text and WRAPPER_RE.search(text) is not None
