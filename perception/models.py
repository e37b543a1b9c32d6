"""The parsed, structured view of a Tavus conversation (the public shape `parse` returns).

Internal models are strict and frozen (extra fields forbidden) so that what the parser returns
is exactly what the README documents. Everything is JSON-serialisable with `model_dump()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from perception.fields import FIELDS, field_names

Mode = Literal["raven", "basic", "none"]
Layout = Literal["system", "user", "mixed", "none"]
Source = Literal["raven", "basic", "audio", "silence"]
IssueKind = Literal[
    "invalid_messages",  # the input is not a list
    "invalid_message",  # an element is not an object with a string role
    "invalid_content",  # content is neither a string, null, nor a list of parts
    "unclosed_tag",  # an opening perception tag with no closing tag
    "nested_tag",  # perception markup inside a perception value (neutralised)
    "duplicate_tag",  # the same field twice in one message (the last one wins)
    "truncated_field",  # a value longer than the cap was cut
    "mixed_modes",  # raven and Basic perception in one conversation
    "stray_text",  # text in a perception message outside any block: kept as data
    "hostile_closing_tag",  # a closing tag inside a value, or one that closes nothing
    "mention_demoted",  # prose mentioning tags shared a message with perception: made data
    "too_many_tags",  # past the per-message tag cap: the rest kept as unparsed data
    "unpaired_tag",  # an unpaired or unknown tag in persona text: kept as persona text
    "unrecognised_wrapper",  # <additional_system_instructions> we do not recognise: kept as speech
]

INSTRUCTION_ROLES = frozenset({"system", "developer"})  # persona text and raven blocks
FIELD_NAMES = field_names()  # at import: the models below are built from the same table


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _FieldValues(StrictModel):
    def is_empty(self) -> bool:
        return not self.extra and all(getattr(self, name) is None for name in FIELD_NAMES)

    if TYPE_CHECKING:  # the fields come from the registry; each is `str | None`
        extra: dict[str, str]

        def __getattr__(self, name: str) -> str | None: ...


# What was perceived of the user: one attribute per row of `perception.fields.FIELDS` (`None`:
# not reported, `""`: reported empty), then the tags no row names.
if TYPE_CHECKING:

    class PerceptionFields(_FieldValues):
        pass

else:
    PerceptionFields = create_model(
        "PerceptionFields",
        __base__=_FieldValues,
        __doc__='What was perceived of the user; `None` means not reported, `""` reported empty.',
        **{field.name: (str | None, Field(None, description=field.doc)) for field in FIELDS},
        extra=(
            dict[str, str],
            Field(default_factory=dict, description="Unknown `<user_*>` tags, by tag name."),
        ),
    )


class Snapshot(PerceptionFields):
    """The newest value of each field across all observations."""


class Observation(PerceptionFields):
    """One perception message (or one audio-analysed / Basic user turn)."""

    message_index: int = Field(description="Index in the request's `messages`.")
    source: Source = Field(description="Which Tavus format it came from.")


class ParseIssue(StrictModel):
    """Something odd the parser worked around; parsing never raises."""

    message_index: int | None = Field(description="Index of the message, or null for the list.")
    kind: IssueKind
    detail: str


PartKind = Literal[
    "persona", "tavus_perception_preamble", "tavus_style", "language", "datetime", "emotion_tags"
]


class InstructionPart(StrictModel):
    """One span of a system message's text and what it is (see `perception.instructions`)."""

    message_index: int = Field(description="Index of the system message in `messages`.")
    kind: PartKind
    text: str = Field(description="The span, verbatim; a message's parts join back to it.")


RuleKind = Literal["language", "datetime", "tavus_perception_preamble"]


class WrappedRule(StrictModel):
    """A Tavus rule recognised inside a user-role `<additional_system_instructions>` message.

    User-role text can be typed by the user, so the wrapper grants nothing: only a rule from a
    closed vocabulary is recognised, and `text` is our own canonical rendering of it (never the
    raw text). Templates place it on the system side."""

    message_index: int = Field(description="Index of the user message that carried it.")
    kind: RuleKind
    text: str = Field(description="The rule as we render it, from the closed vocabulary.")


class EmotionRule(StrictModel):
    """Tavus' Phoenix-4 rule that every reply begins with `<emotion value="…"/>`."""

    text: str = Field(description="The rule's sentence, as found in the system text.")
    values: list[str] | None = Field(
        None, description="The values the rule itself lists as allowed; null when it lists none."
    )
    examples: list[str] = Field(
        default_factory=list, description='Values the rule shows as examples (`value="…"`).'
    )


class Conversation(StrictModel):
    """A Tavus request's messages, split into conversation and perception."""

    mode: Mode = Field(description="Which perception format the request uses.")
    layout: Layout = Field(
        "none",
        description=(
            "Where the perception came: `system` messages (and user-turn prefixes), "
            "perception-only `user` messages, both (`mixed`), or `none`."
        ),
    )
    latest: Snapshot = Field(description="Newest value of each field (null when never seen).")
    observations: list[Observation] = Field(description="Every observation, in message order.")
    messages: list[Any] = Field(
        description=(
            "The conversation with perception removed: persona system text verbatim, clean "
            "user speech, assistant turns and tool calls/results untouched."
        )
    )
    issues: list[ParseIssue] = Field(description="What was odd in the input.")
    instructions: list[InstructionPart] = Field(
        default_factory=list,
        description=(
            "The persona's system text as ordered parts: Tavus' perception preamble, its style, "
            "language, date/time and emotion-tag rules, and the persona's own text."
        ),
    )
    wrapped_rules: list[WrappedRule] = Field(
        default_factory=list,
        description=(
            "Tavus' rules recognised in user-role `<additional_system_instructions>` messages, "
            "canonically re-rendered (language, date/time line, perception preamble)."
        ),
    )
    emotion_rule: EmotionRule | None = Field(
        None,
        description=(
            "Tavus' rule that every reply starts with an emotion tag (Phoenix-4), when the "
            "persona's system text carries one."
        ),
    )
