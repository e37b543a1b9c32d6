"""The perception fields, in one table: every place that lists them reads it (issue 24).

One `PerceptionField` per thing Tavus reports about the user. The parsed models
(`perception/models.py`) get one attribute per row, the raven parser maps tags to fields with
`TAG_FIELDS`, the templates' view labels values with `label`, echo says them with `spoken`,
capture privacy decides per row what each privacy mode keeps (`server/capture/privacy.py`), the
playground reads the field names from the parse it shows, and the scenarios write raven blocks
with each row's `tags[0]`. Adding a field is one line in `FIELDS`.

Privacy is the default: a field is sensitive unless its row says otherwise, and a sensitive
field is kept in the clear only by the capture modes its row lists (`full` alone by default), so
a new field that says nothing is withheld by `shapes` and `no_screen` alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CapturePerception = Literal["full", "shapes", "no_screen"]
CAPTURE_MODES: tuple[CapturePerception, ...] = ("full", "shapes", "no_screen")
Kind = Literal["raven", "audio", "basic", "silence"]
ONLY_FULL: frozenset[CapturePerception] = frozenset({"full"})
NOT_SHAPES: frozenset[CapturePerception] = frozenset({"full", "no_screen"})


@dataclass(frozen=True, slots=True)
class PerceptionField:
    name: str  # the attribute on the parsed models and the key in every JSON shape
    label: str  # what the templates' view calls it ("screen share")
    spoken: str  # how echo opens its sentence about it ("On your screen")
    doc: str  # the parsed model's field description (README, OpenAPI)
    # `raven` fields come in a `<user_*>` block (the first tag is the one we write), `audio`
    # as a user turn's leading tag, `basic` as a Basic prefix, `silence` as Tavus' silent turn.
    kind: Kind = "raven"
    tags: tuple[str, ...] = ()
    sensitive: bool = True  # about the person or their screen: capture privacy reduces it
    kept_by: frozenset[CapturePerception] = ONLY_FULL  # capture modes that store it in the clear

    def kept_in_clear(self, mode: CapturePerception) -> bool:
        return not self.sensitive or mode in self.kept_by


# One line per field (kept on one line each, past the line length, so a field is one line).
# fmt: off
FIELDS: tuple[PerceptionField, ...] = (
    PerceptionField("appearance", "appearance", "What I see", "raven `<user_appearance>`.", tags=("user_appearance",), kept_by=NOT_SHAPES),  # noqa: E501
    PerceptionField("emotions", "emotions", "Your emotions", "raven `<user_emotions>`.", tags=("user_emotions",), kept_by=NOT_SHAPES),  # noqa: E501
    PerceptionField("screenshare", "screen share", "On your screen", "raven `<user_screenshare>` (or `<user_screen>`).", tags=("user_screenshare", "user_screen")),  # noqa: E501
    PerceptionField("visual_scene", "scene", "The scene", "Basic `VISUAL_SCENE:`.", kind="basic", kept_by=NOT_SHAPES),  # noqa: E501
    PerceptionField("audio", "voice", "Your voice", "raven-1 `<user_audio_analysis>`.", kind="audio", tags=("user_audio_analysis",), kept_by=NOT_SHAPES),  # noqa: E501
    PerceptionField("silence", "silence", "Silence", "Tavus' `[the user did not respond]` turn; in `latest` only while the newest user turn is that silence.", kind="silence", sensitive=False),  # noqa: E501
)
# fmt: on
# The tag of raven-1's audio analysis, which leads a user turn rather than filling a block.
AUDIO_TAG = next(field.tags[0] for field in FIELDS if field.kind == "audio")
# Data-part text outside any raven block, kept under `extra` by this key (not a field of its own).
UNPARSED_KEY = "unparsed"
UNPARSED_LABEL = "other"


# The names and rows by name, rebuilt only when `FIELDS` is another tuple (a test extends it):
# the view asks for them per observation of every request.
_Index = tuple[tuple[PerceptionField, ...], tuple[str, ...], dict[str, PerceptionField]]
_index: _Index = ((), (), {})


def _indexed() -> _Index:
    global _index
    if _index[0] is not FIELDS:
        _index = (FIELDS, tuple(field.name for field in FIELDS), {f.name: f for f in FIELDS})
    return _index


def field_names() -> tuple[str, ...]:
    return _indexed()[1]


def field_named(name: str) -> PerceptionField | None:
    return _indexed()[2].get(name)


def tag_fields() -> dict[str, str]:
    """Tag name → field name, for every tag the table names."""
    return {tag: field.name for field in FIELDS for tag in field.tags}


def raven_fields() -> tuple[PerceptionField, ...]:
    """The fields Tavus sends as `<user_*>` blocks, in table order."""
    return tuple(field for field in FIELDS if field.kind == "raven")


def tag_label(tag: str) -> str:
    """A label for a tag no row names (`user_posture` → "posture")."""
    return tag.removeprefix("user_").replace("_", " ")


def label_of(name: str) -> str:
    """The view's label for a field or an `extra` key."""
    if name == UNPARSED_KEY:
        return UNPARSED_LABEL
    field = field_named(name)
    return field.label if field else tag_label(name)


def spoken_of(name: str) -> str:
    """Echo's sentence opener for a field or an `extra` key."""
    field = field_named(name)
    return field.spoken if field else tag_label(name).capitalize()
