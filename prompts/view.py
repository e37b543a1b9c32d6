"""What a template sees: the perception of a `Conversation`, escaped, labelled and ordered.

Labels and order come from the field registry (`perception/fields.py`); a tag no row names
is labelled from its name (`user_posture` → "posture") and comes after the named fields.

Templates never touch raw values: every value here has been through `escape_fenced`, so a
template author cannot forget to escape. `changes` is the short note of what shifted across the
conversation (e.g. emotions going from calm to frustrated), newest last.
"""

from __future__ import annotations

from dataclasses import dataclass

from perception import Conversation, PerceptionFields, label_of
from perception.fields import field_names
from prompts.fence import Fence, escape_fenced

MAX_CHANGE_STEPS = 3  # "calm → tense → angry" is a note; a full history is not


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    label: str
    values: list[str]  # distinct consecutive values, oldest first, newest last


def field_values(fields: PerceptionFields) -> dict[str, str]:
    """Non-empty values of one snapshot/observation by name, canonical order, extra last."""
    values = {name: getattr(fields, name, None) for name in field_names()}
    named = {name: value for name, value in values.items() if value}
    named.update({tag: value for tag, value in sorted(fields.extra.items()) if value})
    return named


def snapshot_items(conversation: Conversation) -> list[Item]:
    return [
        Item(name, label_of(name), escape_fenced(value))
        for name, value in field_values(conversation.latest).items()
    ]


def changes(conversation: Conversation) -> list[Change]:
    history: dict[str, list[str]] = {}
    for observation in conversation.observations:
        for name, value in field_values(observation).items():
            seen = history.setdefault(name, [])
            if not seen or seen[-1] != value:
                seen.append(value)
    return [
        Change(
            name,
            label_of(name),
            [escape_fenced(v) for v in values[-MAX_CHANGE_STEPS:]],
        )
        for name, values in history.items()
        if len(values) > 1
    ]


def template_variables(
    conversation: Conversation, fence: Fence, include_changes: bool = True
) -> dict[str, object]:
    return {
        "mode": conversation.mode,
        "fence": fence,
        "latest": snapshot_items(conversation),
        "changes": changes(conversation) if include_changes else [],
    }
