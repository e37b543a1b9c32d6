"""Parse the perception Tavus attaches to chat-completions requests into structured context.

A pure library (stdlib + pydantic, no I/O): `parse_messages(messages)` returns a
`Conversation` with the perception mode, the newest snapshot, every observation in order, the
conversation with perception removed, and any issues found. See README "Perception".
"""

from perception.emotion_rule import find_emotion_rule, strip_emotion_tags
from perception.fields import (
    FIELDS,
    UNPARSED_KEY,
    CapturePerception,
    PerceptionField,
    label_of,
    spoken_of,
)
from perception.instructions import instruction_parts, system_text_parts, without_preamble
from perception.models import (
    FIELD_NAMES,
    INSTRUCTION_ROLES,
    Conversation,
    EmotionRule,
    InstructionPart,
    Observation,
    ParseIssue,
    PerceptionFields,
    Snapshot,
    WrappedRule,
)
from perception.parser import DEFAULT_MAX_FIELD_CHARS, parse_messages
from perception.tags import neutralise_markup
from perception.text import message_text, strip_invisible

__all__ = [
    "DEFAULT_MAX_FIELD_CHARS",
    "FIELDS",
    "FIELD_NAMES",
    "INSTRUCTION_ROLES",
    "UNPARSED_KEY",
    "CapturePerception",
    "Conversation",
    "EmotionRule",
    "InstructionPart",
    "Observation",
    "ParseIssue",
    "PerceptionField",
    "PerceptionFields",
    "Snapshot",
    "WrappedRule",
    "find_emotion_rule",
    "instruction_parts",
    "label_of",
    "message_text",
    "neutralise_markup",
    "parse_messages",
    "spoken_of",
    "strip_emotion_tags",
    "strip_invisible",
    "system_text_parts",
    "without_preamble",
]
