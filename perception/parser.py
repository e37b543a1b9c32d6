"""`parse_messages`: a Tavus `messages` list in, a structured `Conversation` out.

Walks the messages once. System (and developer) messages may hold raven blocks; user turns may
start with raven-1 audio analysis or carry Basic prefixes; assistant and tool messages are never
perception, whatever they contain. The parser never raises on a list: anything odd is kept
as it was and reported in `issues`.
"""

from __future__ import annotations

from typing import Any

from perception.emotion_rule import find_emotion_rule
from perception.instructions import instruction_parts
from perception.models import (
    FIELD_NAMES,
    INSTRUCTION_ROLES,
    Conversation,
    InstructionPart,
    IssueKind,
    Mode,
    Observation,
    ParseIssue,
    Snapshot,
    Source,
)
from perception.raven import KNOWN_TAGS, MAX_TAGS, UNPARSED_KEY, split_raven_message
from perception.speech import (
    SILENCE_NOTE,
    is_basic_turn,
    is_silence,
    split_basic_turn,
    split_leading_audio,
)
from perception.text import clean_value, message_text, with_text

DEFAULT_MAX_FIELD_CHARS = 4000


class _ConversationBuilder:
    """Accumulates the output of one parse; thrown away afterwards."""

    def __init__(self, max_field_chars: int) -> None:
        self.max_field_chars = max_field_chars
        self.messages: list[Any] = []
        self.observations: list[Observation] = []
        self.issues: list[ParseIssue] = []
        self.seen_issues: set[tuple[int | None, str, str]] = set()
        self.saw_raven = False
        self.saw_basic = False
        self.last_user_silent = False

    def issue(self, index: int | None, kind: IssueKind, detail: str) -> None:
        key = (index, kind, detail)
        if key not in self.seen_issues:  # the same finding twice in one message says nothing new
            self.seen_issues.add(key)
            self.issues.append(ParseIssue(message_index=index, kind=kind, detail=detail))

    def clean(self, index: int, name: str, raw: str) -> str:
        cleaned = clean_value(raw, self.max_field_chars)
        if cleaned.had_nested_markup:
            self.issue(index, "nested_tag", f"perception markup inside {name} was neutralised")
        if cleaned.truncated_from is not None:
            self.issue(
                index,
                "truncated_field",
                f"{name} was {cleaned.truncated_from} characters; cut to {self.max_field_chars}",
            )
        return cleaned.text

    def observe(self, index: int, source: Source, fields: dict[str, Any]) -> None:
        self.observations.append(Observation(message_index=index, source=source, **fields))

    def system_message(self, index: int, message: dict[str, Any], text: str) -> None:
        split = split_raven_message(text)
        if split is None:
            self.messages.append(message)
            return
        if split.demoted_mentions:
            self.issue(
                index,
                "mention_demoted",
                "perception follows prose that mentions tags in this message; everything from "
                "the first tag on was treated as data",
            )
        if split.too_many_tags:
            self.issue(
                index,
                "too_many_tags",
                f"more than {MAX_TAGS} tags in one message; the rest was kept as unparsed data",
            )
        if split.stray_closers:
            self.issue(
                index,
                "hostile_closing_tag",
                f"{split.stray_closers} closing tag(s) closed nothing; kept as data",
            )
        fields: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for block in split.blocks:
            field = KNOWN_TAGS.get(block.name)
            if not block.closed:
                self.issue(index, "unclosed_tag", f"<{block.name}> has no closing tag")
            if block.stray_closers:
                self.issue(
                    index,
                    "hostile_closing_tag",
                    f"<{block.name}>'s value holds its own closing tag; kept it all as the value",
                )
            if (field is not None and field in fields) or block.name in extra:
                self.issue(index, "duplicate_tag", f"<{block.name}> appears twice; kept the last")
            value = self.clean(index, block.name, block.value)
            if field is None:
                extra[block.name] = value
            else:
                fields[field] = value
        self.saw_raven = True
        if split.leftover:
            self.issue(index, "stray_text", "text outside perception blocks kept as data")
            extra[UNPARSED_KEY] = self.clean(index, UNPARSED_KEY, split.leftover)
        self.observe(index, "raven", {**fields, "extra": extra})
        content = message.get("content")
        if split.persona or (isinstance(content, list) and len(content) > 1):
            self.messages.append(with_text(message, split.persona))

    def user_message(self, index: int, message: dict[str, Any], text: str) -> None:
        if is_silence(text):
            # Not speech: Tavus fills the turn when the user stayed silent. The turn is kept
            # (empty) so the conversation keeps its shape; templates say what happened.
            self.messages.append(with_text(message, ""))
            self.observe(index, "silence", {"silence": SILENCE_NOTE})
            self.last_user_silent = True
            return
        self.last_user_silent = False
        speech = text
        analyses: list[str] = []
        scene: str | None = None
        is_basic = False
        # Repeat until stable, so the cleaned speech never starts with perception markup.
        while True:
            audio = split_leading_audio(speech)
            if audio is not None and audio.analyses:
                analyses.extend(audio.analyses)
                speech = audio.speech
                continue
            if audio is not None and audio.unclosed:
                self.issue(index, "unclosed_tag", "<user_audio_analysis> has no closing tag")
            if is_basic_turn(speech):
                turn = split_basic_turn(speech)
                is_basic = True
                speech = turn.speech
                if turn.visual_scene is not None:
                    scene = turn.visual_scene
                continue
            break
        if not analyses and not is_basic:
            self.messages.append(message)
            return
        self.messages.append(with_text(message, speech))
        if analyses:
            self.saw_raven = True
            audio_text = " ".join(analyses)
            self.observe(index, "audio", {"audio": self.clean(index, "audio", audio_text)})
        if is_basic:
            self.saw_basic = True
            if scene is not None:
                cleaned_scene = self.clean(index, "visual_scene", scene)
                self.observe(index, "basic", {"visual_scene": cleaned_scene})

    def mode(self) -> Mode:
        if self.saw_raven and self.saw_basic:
            self.issue(None, "mixed_modes", "both raven and Basic perception found; mode is raven")
        if self.saw_raven:
            return "raven"
        return "basic" if self.saw_basic else "none"

    def latest(self) -> Snapshot:
        newest: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for observation in self.observations:
            for name in FIELD_NAMES:
                value = getattr(observation, name)
                if value is not None:
                    newest[name] = value
            extra.update(observation.extra)
        if not self.last_user_silent:
            newest.pop("silence", None)  # an earlier silence is over once the user speaks
        return Snapshot(**newest, extra=extra)


def system_text_parts(messages: list[Any]) -> list[InstructionPart]:
    """The ordered parts of every kept system/developer message (see `perception.instructions`)."""
    return [
        part
        for index, message in enumerate(messages)
        if isinstance(message, dict)
        and isinstance(message.get("role"), str)
        and message["role"] in INSTRUCTION_ROLES
        for part in instruction_parts(index, message_text(message.get("content")) or "")
    ]


def parse_messages(
    messages: Any, *, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS, instructions: bool = True
) -> Conversation:
    """Split a chat-completions `messages` list into conversation and perception.

    Never raises: a non-list gives an empty conversation with an `invalid_messages` issue, and
    odd elements are passed through unchanged with an issue each. `instructions=False` skips
    splitting the system text into parts (the completion path does not need them).
    """
    builder = _ConversationBuilder(max_field_chars)
    if not isinstance(messages, list):
        builder.issue(
            None, "invalid_messages", f"messages must be a list, got {type(messages).__name__}"
        )
        messages = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str):
            builder.issue(index, "invalid_message", "not an object with a string role; kept as is")
            builder.messages.append(message)
            continue
        if role not in INSTRUCTION_ROLES and role != "user":
            builder.messages.append(message)  # assistant/tool text is never perception
            continue
        text = message_text(message.get("content"))
        if text is None:
            builder.issue(index, "invalid_content", "content is not a string, null or parts list")
            builder.messages.append(message)
        elif role == "user":
            builder.user_message(index, message, text)
        else:
            builder.system_message(index, message, text)
    mode = builder.mode()
    return Conversation(
        mode=mode,
        latest=builder.latest(),
        observations=builder.observations,
        messages=builder.messages,
        issues=builder.issues,
        instructions=system_text_parts(builder.messages) if instructions else [],
        emotion_rule=find_emotion_rule(builder.messages),
    )
