"""Tavus' Phoenix-4 rule that every reply begins with an emotion tag, found in the system text.

With Phoenix-4 replicas Tavus adds a sentence such as `EVERY RESPONSE MUST BEGIN WITH AN EMOTION
TAG such as <emotion value="content"/>.` to the persona's system text (the exact wording is not
published; tests/fixtures/tavus/emotion-rule.json records what is known and how thin it is).
The rule is looked for only in persona system text — the parser has already moved perception out
of it — so a screen share showing `<emotion …>` markup cannot switch it on or choose its values.

A rule can name its allowed values ("… one of: happy, sad, neutral"); then those are the values.
A value shown only as an example ("such as <emotion value="content"/>") is added to the
configured list instead of replacing it. Every scan here is a bounded `str.find` or a regex
without nested quantifiers (linear).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from perception.models import INSTRUCTION_ROLES, EmotionRule
from perception.text import message_text

# Tavus' text comes first; the rule is never found past this (bounded work on huge prompts).
SEARCHED_CHARS = 16_000
RULE_WINDOW = 600  # characters after the rule's anchor in which its values are read
_ANCHORS = ("<emotion", "emotion tag")
_EXAMPLE_VALUE = re.compile(r"""value\s*=\s*["']([a-z][a-z_-]{0,31})["']""")
_LIST_INTRODUCERS = (
    "one of",
    "allowed values",
    "allowed emotions",
    "available emotions",
    "valid emotions",
    "valid values",
    "choose from",
    "emotions are",
    "values are",
)
_LIST_SEPARATORS = re.compile(r"[,/|;]|\bor\b|\band\b")
_VALUE = re.compile(r"[a-z][a-z_-]{1,31}")
MAX_VALUES = 32


def _listed_values(window: str) -> list[str]:
    """Values the rule lists after an introducer ("one of: a, b, c"), up to the sentence end."""
    for introducer in _LIST_INTRODUCERS:
        start = window.find(introducer)
        if start < 0:
            continue
        rest = window[start + len(introducer) :].lstrip(" :-\t")
        end = min((i for i in (rest.find("."), rest.find("\n")) if i >= 0), default=len(rest))
        items = [item.strip(" \t\"'`:*") for item in _LIST_SEPARATORS.split(rest[:end])]
        values = [item for item in items if _VALUE.fullmatch(item)]
        if len(values) >= 2 and len(values) == len([item for item in items if item]):
            return list(dict.fromkeys(values))[:MAX_VALUES]
    return []


def _rule_in(text: str) -> EmotionRule | None:
    lowered = text[:SEARCHED_CHARS].lower()
    anchors = [position for position in map(lowered.find, _ANCHORS) if position >= 0]
    if not anchors:
        return None
    start = min(anchors)
    sentence_start = max(lowered.rfind(".", 0, start), lowered.rfind("\n", 0, start)) + 1
    window = lowered[sentence_start : start + RULE_WINDOW]
    listed = _listed_values(window)
    examples = list(dict.fromkeys(_EXAMPLE_VALUE.findall(window)))[:MAX_VALUES]
    sentence_end = lowered.find(".", start + len("<emotion value=")) + 1 or len(lowered)
    return EmotionRule(
        text=text[sentence_start:sentence_end].strip()[:RULE_WINDOW],
        values=listed or None,
        examples=examples,
    )


def find_emotion_rule(messages: Iterable[Any]) -> EmotionRule | None:
    """The emotion-tag rule in the persona's system messages (perception already removed)."""
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in INSTRUCTION_ROLES:
            continue
        text = message_text(message.get("content"))
        if text and "emotion" in text[:SEARCHED_CHARS].lower():
            rule = _rule_in(text)
            if rule is not None:
                return rule
    return None


# An emotion tag in assistant history, as Tavus' Phoenix-4 replicas produce them; literal start,
# possessive runs that stop at the next `<`: linear.
_EMOTION_TAG = re.compile(r"<[ \t]*+/?+[ \t]*+emotion\b[^<>]*+>", re.I)


def strip_emotion_tags(text: str) -> str:
    """`text` without `<emotion …/>` tags (for history the persona has no emotion-tag rule for)."""
    if "<" not in text:
        return text
    stripped = _EMOTION_TAG.sub("", text)
    return stripped.strip() if stripped != text else text
