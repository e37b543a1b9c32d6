"""Perception carried inside user turns: raven-1's leading audio analysis and Basic's prefixes.

Only the *leading* `<user_audio_analysis>` of a user turn is perception; the same tag later in
the speech is something the user said. Basic turns look like
`USER_SPEECH: … VISUAL_SCENE: …` with either part missing and irregular whitespace. Tavus
appends the scene after the speech, so the split is at the *last* `VISUAL_SCENE:`: a user who
says "VISUAL_SCENE:" cannot push words of their own into the scene or lose speech to it.
Leading markers are stripped repeatedly so cleaned speech never begins with one (which keeps
parsing idempotent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perception.fields import AUDIO_TAG
from perception.tags import TAG_RE

SPEECH_MARKER = "USER_SPEECH:"
SCENE_MARKER = "VISUAL_SCENE:"
# What Tavus sends as the user's turn when they stayed silent (a public integration's logs).
SILENCE_TURN = "[the user did not respond]"
SILENCE_NOTE = "the user did not respond"


def is_silence(text: str) -> bool:
    if len(text) > 2 * len(SILENCE_TURN) or "respond" not in text.lower():
        return False  # the common case: speech, decided without normalising it
    return " ".join(text.split()).lower() == SILENCE_TURN


@dataclass(frozen=True, slots=True)
class LeadingAudio:
    analyses: list[str]  # raw values of the leading audio blocks (usually one)
    speech: str  # what remains, trimmed
    unclosed: bool  # an opening audio tag with no closing tag: left in the speech


def _closes_audio(tag: re.Match[str]) -> bool:
    return bool(tag.group(1)) and tag.group(2).lower() == AUDIO_TAG


def split_leading_audio(text: str) -> LeadingAudio | None:
    """The audio analyses at the start of a user turn, or None when it has none."""
    if not text.lstrip().startswith("<"):
        return None
    tags = TAG_RE.finditer(text)  # lazily: only the leading tags of the turn are read
    analyses: list[str] = []
    position = 0
    # Each analysis is an opening audio tag with only whitespace before it; its value runs to
    # the first closing audio tag (a tag in between is part of the value, neutralised later).
    for opening in tags:
        is_audio_open = not opening.group(1) and opening.group(2).lower() == AUDIO_TAG
        if not is_audio_open or text[position : opening.start()].strip():
            break
        closer = next((tag for tag in tags if _closes_audio(tag)), None)
        if closer is None:  # left in the speech, reported by the parser
            return LeadingAudio(analyses, text[position:].strip(), unclosed=True)
        analyses.append(text[opening.end() : closer.start()])
        position = closer.end()
    if not analyses:
        return None
    return LeadingAudio(analyses, text[position:].strip(), unclosed=False)


def is_basic_turn(text: str) -> bool:
    stripped = text.lstrip()
    return stripped.startswith(SPEECH_MARKER) or stripped.startswith(SCENE_MARKER)


def strip_markers(speech: str) -> str:
    speech = speech.strip()
    while True:
        for marker in (SPEECH_MARKER, SCENE_MARKER):
            if speech.startswith(marker):
                speech = speech[len(marker) :].lstrip()
                break
        else:
            return speech


@dataclass(frozen=True, slots=True)
class BasicTurn:
    speech: str
    visual_scene: str | None


def split_basic_turn(text: str) -> BasicTurn:
    """Speech and scene of a turn for which `is_basic_turn` holds."""
    stripped = text.strip()
    if stripped.startswith(SPEECH_MARKER):
        body = stripped[len(SPEECH_MARKER) :]
        cut = body.rfind(SCENE_MARKER)
        if cut == -1:
            return BasicTurn(strip_markers(body), None)
        return BasicTurn(strip_markers(body[:cut]), body[cut + len(SCENE_MARKER) :])
    # Scene first (or scene only): the speech, if any, follows the first USER_SPEECH:.
    body = stripped[len(SCENE_MARKER) :]
    cut = body.find(SPEECH_MARKER)
    if cut == -1:
        return BasicTurn("", body)
    return BasicTurn(strip_markers(body[cut + len(SPEECH_MARKER) :]), body[:cut])
