"""`parse_messages`: a Tavus `messages` list in, a structured `Conversation` out.

Walks the messages once. System (and developer) messages may hold raven blocks; user turns may
start with raven-1 audio analysis or carry Basic prefixes; a user message that is only
perception (Tavus' user-role layout, `perception.user_layout`) is an observation, not a turn,
and an audio-only one attaches to the next user turn's speech; assistant and tool messages are
never perception, whatever they contain. The parser never raises on a list: anything odd is kept
as it was and reported in `issues`.
"""

from __future__ import annotations

from typing import Any

from perception.emotion_rule import find_emotion_rule
from perception.fields import UNPARSED_KEY
from perception.instructions import system_text_parts
from perception.models import (
    FIELD_NAMES,
    INSTRUCTION_ROLES,
    Conversation,
    IssueKind,
    Layout,
    Mode,
    Observation,
    ParseIssue,
    Snapshot,
    Source,
    WrappedRule,
)
from perception.raven import KNOWN_TAGS, MAX_TAGS, Block, split_raven_message
from perception.speech import (
    SILENCE_NOTE,
    is_basic_turn,
    is_silence,
    split_basic_turn,
    split_leading_audio,
)
from perception.text import clean_value, message_text, with_text
from perception.user_layout import has_wrapper, split_user_perception

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
        self.saw_system_layout = False  # perception in system messages
        self.saw_user_layout = False  # perception-only user messages
        self.wrapped_rules: list[WrappedRule] = []
        # Audio analyses of an audio-only user message, waiting for the next user turn's speech.
        self.pending_audio: tuple[int, list[str]] | None = None

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
        if split is not None and split.unpaired_tags:
            self.issue(
                index,
                "unpaired_tag",
                f"{split.unpaired_tags} unpaired or unknown tag(s) in persona text; kept as "
                "persona text",
            )
        if split is None or not split.has_data:
            self.messages.append(message)
            return
        self.saw_system_layout = True
        if split.demoted_mentions:
            self.issue(
                index,
                "mention_demoted",
                "prose in this message mentions a perception tag pair before its perception; "
                "everything from that mention on was treated as data",
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
        fields, extra = self.block_fields(index, split.blocks)
        self.saw_raven = True
        if split.leftover:
            self.issue(index, "stray_text", "text outside perception blocks kept as data")
            extra[UNPARSED_KEY] = self.clean(index, UNPARSED_KEY, split.leftover)
        self.observe(index, "raven", {**fields, "extra": extra})
        content = message.get("content")
        if split.persona or (isinstance(content, list) and len(content) > 1):
            self.messages.append(with_text(message, split.persona))

    def block_fields(
        self, index: int, blocks: list[Block]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The cleaned field values of one message's blocks (unknown tags under `extra`)."""
        fields: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for block in blocks:
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
        return fields, extra

    def user_perception(self, index: int, text: str) -> bool:
        """A perception-only user message (the user-role layout): observed, not a turn."""
        found = split_user_perception(text)
        if found is None:
            if has_wrapper(text):
                self.issue(
                    index,
                    "unrecognised_wrapper",
                    "<additional_system_instructions> holding something other than perception "
                    "or a recognised Tavus rule; kept in the user's turn as data",
                )
            return False
        self.saw_user_layout = True
        for kind, rule in found.rules:
            self.wrapped_rules.append(WrappedRule(message_index=index, kind=kind, text=rule))
        if found.audio:
            self.flush_audio()
            self.pending_audio = (index, found.audio)
        if found.visual:
            self.saw_raven = True
            fields, extra = self.block_fields(index, found.visual)
            self.observe(index, "raven", {**fields, "extra": extra})
        return True

    def flush_audio(self) -> None:
        """Audio that no speech turn followed: an observation of its own message."""
        if self.pending_audio is not None:
            index, analyses = self.pending_audio
            self.pending_audio = None
            self.observe_audio(index, analyses)

    def observe_audio(self, index: int, analyses: list[str]) -> None:
        self.saw_raven = True
        self.observe(index, "audio", {"audio": self.clean(index, "audio", " ".join(analyses))})

    def user_message(self, index: int, message: dict[str, Any], text: str) -> None:
        content = message.get("content")
        only_text = not isinstance(content, list) or all(
            isinstance(part, dict) and part.get("type") == "text" for part in content
        )
        # A message with an image or audio part is a turn whatever its text says: dropping it
        # as perception would lose what the user sent.
        if only_text and self.user_perception(index, text):
            return
        if is_silence(text):
            self.flush_audio()
            # Not speech: Tavus fills the turn when the user stayed silent. The turn is kept
            # (empty) so the conversation keeps its shape; templates say what happened.
            self.messages.append(with_text(message, ""))
            self.observe(index, "silence", {"silence": SILENCE_NOTE})
            self.last_user_silent = True
            return
        self.last_user_silent = False
        speech = text
        analyses: list[str] = []
        if self.pending_audio is not None:  # an audio-only message just before: this speech's
            analyses.extend(self.pending_audio[1])
            self.pending_audio = None
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
            self.observe_audio(index, analyses)
        if is_basic:
            self.saw_basic = True
            if scene is not None:
                cleaned_scene = self.clean(index, "visual_scene", scene)
                self.observe(index, "basic", {"visual_scene": cleaned_scene})

    def layout(self) -> Layout:
        if self.saw_user_layout:
            return "mixed" if self.saw_system_layout else "user"
        return "system" if self.observations else "none"

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
        if role != "user":
            builder.flush_audio()
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
    builder.flush_audio()
    mode = builder.mode()
    return Conversation(
        mode=mode,
        layout=builder.layout(),
        wrapped_rules=builder.wrapped_rules,
        latest=builder.latest(),
        observations=builder.observations,
        messages=builder.messages,
        issues=builder.issues,
        instructions=system_text_parts(builder.messages) if instructions else [],
        emotion_rule=find_emotion_rule(builder.messages),
    )
