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
from typing import Any

from perception.models import INSTRUCTION_ROLES, InstructionPart, PartKind
from perception.text import message_text

# The perception preamble: from its opening sentence to its last rule (raven or Basic). The
# patterns use bounded, possessive gaps, so a failed search costs linear time.
_PREAMBLE = re.compile(
    r"You are in a live video conference call with a user\.(?:(?!You are in)[^\n]){0,3000}?"
    r"(?:IF IT'S NOT RELEVANT\.|in your response\.)",
    re.I,
)
# Each kind's pattern, matched against the lower-cased sentence: case-sensitive, and each word
# boundary checked *after* a literal first letter (`t(?<=\bt)alk`), so the scan keeps the regex
# engine's fast first-character search (re.I and a leading `\b` each lose it, and a long
# sentence is read up to four times).
_SENTENCE_KINDS: list[tuple[PartKind, re.Pattern[str]]] = [
    (
        "tavus_style",
        re.compile(
            r"t(?<=\bt)alk to the user in a casual|r(?<=\br)eply in short sentences"
            r"|d(?<=\bd)o not include stage directions"
        ),
    ),
    ("language", re.compile(r"^\s*respond (?:only )?in \w+\.?\s*$")),
    (
        "datetime",
        re.compile(
            r"(?:t(?<=\bt)he user's timezone is|c(?<=\bc)urrent (?:date|time) is"
            r"|t(?<=\bt)oday is)\b"
        ),
    ),
    ("emotion_tags", re.compile(r"<emotion\b|e(?<=\be)motion tag")),
]
# Where a sentence ends: a run of terminators, or a newline (the newline belongs to it).
_SENTENCE_END = re.compile(r"[.!?]++|\n")
# Any phrase that can make a sentence one of Tavus' kinds (the search form of each kind's
# pattern, on lower-cased text; the language rule is confirmed on its whole sentence by
# `_kind_of`). Only the sentences these phrases fall in are looked at: the rest of the text is
# persona in bulk, found by one scan in C. Sentence by sentence it cost 640-675 ms per MB of
# short sentences; the alternatives start with literals, so the scan stays under ~20 ms per MB.
_ANCHOR = re.compile(
    r"t(?<=\bt)(?:alk to the user in a casual|he user's timezone is\b|oday is\b)"
    r"|re(?<=\bre)(?:ply in short sentences|spond (?:only )?in \w)"
    r"|d(?<=\bd)o not include stage directions|e(?<=\be)motion tag"
    r"|c(?<=\bc)urrent (?:date|time) is\b|<emotion\b"
)
_TERMINATORS = ".!?\n"


def _kind_of(sentence: str) -> PartKind:
    """The kind of a lower-cased sentence."""
    for kind, pattern in _SENTENCE_KINDS:
        if pattern.search(sentence):
            return kind
    return "persona"


# Tavus' own text is a few thousand characters; past this, the rest of a message is persona
# text without a per-sentence look (the work per message stays bounded).
CLASSIFIED_CHARS = 16_000
# Tavus' rules are about a dozen sentences: past this many sentences looked at in one span, the
# rest is persona (each look is a few microseconds of Python; this bounds them per message).
MAX_LOOKS = 64


def _rule_sentences(text: str, limit: int) -> list[tuple[PartKind, int, int]]:
    """The sentences of `text[:limit]` that are one of Tavus' kinds, in order, as spans."""
    found: list[tuple[PartKind, int, int]] = []
    # Lower-cased for a case-sensitive scan (much faster than re.I); U+0130 is the one letter
    # whose lower case is longer, so it is replaced first to keep every offset the same.
    lowered = text[:limit].replace("\u0130", "I").lower()
    position = 0
    for _ in range(MAX_LOOKS):
        anchor = _ANCHOR.search(lowered, position)
        if anchor is None:
            break
        hit = anchor.start()
        # The sentence starts after the last terminator before the phrase (bounded by the
        # previous sentence's end, so the backward looks add up to one pass).
        start = max(text.rfind(char, position, hit) for char in _TERMINATORS) + 1
        start = max(start, position)
        end_match = _SENTENCE_END.search(text, anchor.end(), limit)
        end = end_match.end() if end_match is not None else limit
        kind = _kind_of(lowered[start:end])
        if kind != "persona":
            found.append((kind, start, end))
        position = end
    return found


def _classify(text: str) -> list[tuple[PartKind, str]]:
    """Sentence by sentence (`[^.!?\\n]*` and its terminators), as ordered parts: Tavus' kinds
    where their phrases are, persona text in between; a whitespace-only sentence belongs to the
    part before it, and neighbours of the same kind are merged."""
    limit = min(len(text), CLASSIFIED_CHARS)
    pieces: list[tuple[PartKind, list[str]]] = []

    def add(kind: PartKind, piece: str) -> None:
        if not piece:
            return
        if pieces and pieces[-1][0] == kind:
            pieces[-1][1].append(piece)
        else:
            pieces.append((kind, [piece]))

    def add_gap(gap: str) -> None:
        # Leading whitespace-only sentences (up to the last newline of the leading whitespace)
        # join the part before; the rest is persona.
        if pieces:
            leading = len(gap) - len(gap.lstrip())
            cut = len(gap) if leading == len(gap) else gap.rfind("\n", 0, leading) + 1
            pieces[-1][1].append(gap[:cut])
            gap = gap[cut:]
        add("persona", gap)

    position = 0
    for kind, start, end in _rule_sentences(text, limit):
        add_gap(text[position:start])
        add(kind, text[start:end])
        position = end
    add_gap(text[position:])
    return [(kind, "".join(chunks)) for kind, chunks in pieces]


def preamble_spans(text: str) -> list[tuple[int, int]]:
    """Where Tavus' published perception preambles are in `text` (within its first
    CLASSIFIED_CHARS), as (start, end) spans in order."""
    if "conference call" not in text[:CLASSIFIED_CHARS].lower():
        return []  # the common case, decided by one C scan (the re.I search has no fast prefix)
    return [match.span() for match in _PREAMBLE.finditer(text, 0, CLASSIFIED_CHARS)]


def instruction_parts(index: int, text: str) -> list[InstructionPart]:
    """The ordered parts of one system message's text."""
    pieces: list[tuple[PartKind, str]] = []
    position = 0
    for start, end in preamble_spans(text):
        pieces.extend(_classify(text[position:start]))
        pieces.append(("tavus_perception_preamble", text[start:end]))
        position = end
    pieces.extend(_classify(text[position:]))
    merged: list[tuple[PartKind, list[str]]] = []
    for kind, part in pieces:  # whitespace between parts belongs to the part before it
        if merged and (not part.strip() or merged[-1][0] == kind):
            merged[-1][1].append(part)
        else:
            merged.append((kind, [part]))
    return [
        InstructionPart(message_index=index, kind=kind, text="".join(chunks))
        for kind, chunks in merged
    ]


def system_text_parts(messages: list[Any]) -> list[InstructionPart]:
    """The ordered parts of every kept system/developer message."""
    return [
        part
        for index, message in enumerate(messages)
        if isinstance(message, dict)
        and isinstance(message.get("role"), str)
        and message["role"] in INSTRUCTION_ROLES
        for part in instruction_parts(index, message_text(message.get("content")) or "")
    ]


def without_preamble(text: str) -> str:
    """`text` with Tavus' perception preamble removed (the fence's own instructions replace it:
    it tells the model to read `<user_*>` tags that a fenced prompt no longer contains)."""
    if "conference call" not in text.lower():
        return text
    return _PREAMBLE.sub("", text).strip()
