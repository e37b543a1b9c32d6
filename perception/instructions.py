"""Tavus' own system text, told apart from the persona's: the ordered parts of a system message.

Tavus builds the first system message from its perception preamble, its speech-style rules, a
language rule, the persona's `system_prompt` and `context` (see the published transcript in
tests/fixtures/tavus/preambles.json), and may add separate messages such as "The user's timezone
is unknown." or "respond in english", and, on Phoenix-4 replicas, a rule that every reply starts
with an emotion tag. The matching is tolerant (case and spacing are ignored, and only a few
anchor phrases are used) because the wording changes between Tavus versions; anything not
recognised is `persona`, verbatim. Each part is a span of the message's own text, so joining the
parts gives the message back byte for byte.
"""

from __future__ import annotations

import re

from perception.models import InstructionPart, PartKind

# The perception preamble: from its opening sentence to its last rule (raven or Basic). The
# patterns use bounded, possessive gaps, so a failed search costs linear time.
_PREAMBLE = re.compile(
    r"You are in a live video conference call with a user\.(?:(?!You are in)[^\n]){0,3000}?"
    r"(?:IF IT'S NOT RELEVANT\.|in your response\.)",
    re.I,
)
_SENTENCE_KINDS: list[tuple[PartKind, re.Pattern[str]]] = [
    (
        "tavus_style",
        re.compile(
            r"\b(?:talk to the user in a casual|reply in short sentences"
            r"|do not include stage directions)",
            re.I,
        ),
    ),
    ("language", re.compile(r"^\s*respond (?:only )?in \w+\.?\s*$", re.I)),
    (
        "datetime",
        re.compile(r"\b(?:the user's timezone is|current (?:date|time) is|today is)\b", re.I),
    ),
    ("emotion_tags", re.compile(r"<emotion\b|\bemotion tag", re.I)),
]
_SENTENCE = re.compile(r"[^.!?\n]*+(?:[.!?]++|\n|$)")


def _kind_of(sentence: str) -> PartKind:
    for kind, pattern in _SENTENCE_KINDS:
        if pattern.search(sentence):
            return kind
    return "persona"


# Tavus' own text is a few thousand characters; past this, the rest of a message is persona
# text without a per-sentence look (the work per message stays bounded).
CLASSIFIED_CHARS = 16_000


def _classify(text: str) -> list[tuple[PartKind, str]]:
    """Sentence by sentence, merging neighbours of the same kind (whitespace joins either)."""
    parts: list[tuple[PartKind, str]] = []
    if len(text) > CLASSIFIED_CHARS:
        return [*_classify(text[:CLASSIFIED_CHARS]), ("persona", text[CLASSIFIED_CHARS:])]
    for match in _SENTENCE.finditer(text):
        sentence = match.group(0)
        if not sentence:
            continue
        kind = _kind_of(sentence) if sentence.strip() else (parts[-1][0] if parts else "persona")
        if parts and parts[-1][0] == kind:
            parts[-1] = (kind, parts[-1][1] + sentence)
        else:
            parts.append((kind, sentence))
    return parts


def instruction_parts(index: int, text: str) -> list[InstructionPart]:
    """The ordered parts of one system message's text."""
    pieces: list[tuple[PartKind, str]] = []
    position = 0
    for match in _PREAMBLE.finditer(text, 0, CLASSIFIED_CHARS):
        pieces.extend(_classify(text[position : match.start()]))
        pieces.append(("tavus_perception_preamble", match.group(0)))
        position = match.end()
    pieces.extend(_classify(text[position:]))
    merged: list[tuple[PartKind, str]] = []
    for kind, part in pieces:  # whitespace between parts belongs to the part before it
        if merged and (not part.strip() or merged[-1][0] == kind):
            merged[-1] = (merged[-1][0], merged[-1][1] + part)
        else:
            merged.append((kind, part))
    return [InstructionPart(message_index=index, kind=kind, text=part) for kind, part in merged]


def without_preamble(text: str) -> str:
    """`text` with Tavus' perception preamble removed (the fence's own instructions replace it:
    it tells the model to read `<user_*>` tags that a fenced prompt no longer contains)."""
    if "conference call" not in text.lower():
        return text
    return _PREAMBLE.sub("", text).strip()
