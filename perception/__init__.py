"""Parse the perception Tavus attaches to chat-completions requests into structured context.

A pure library (stdlib + pydantic, no I/O): `parse_messages(messages)` returns a
`Conversation` with the perception mode, the newest snapshot, every observation in order, the
conversation with perception removed, and any issues found. See README "Perception".
"""

from perception.models import Conversation, Observation, ParseIssue, Snapshot
from perception.parser import DEFAULT_MAX_FIELD_CHARS, parse_messages

__all__ = [
    "DEFAULT_MAX_FIELD_CHARS",
    "Conversation",
    "Observation",
    "ParseIssue",
    "Snapshot",
    "parse_messages",
]
