"""One source for the perception fields (issue 24): every consumer reads `perception/fields.py`,
adding a field is one row, and a new sensitive field is never stored in the clear by omission."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import perception.fields as registry
from perception import FIELDS, Observation, PerceptionField, Snapshot, parse_messages
from prompts.view import snapshot_items
from server.capture.privacy import reduce_parsed
from server.responders.echo import describe_perception
from tests.registry_extension import VALUE

ROOT = Path(__file__).resolve().parents[1]


def test_the_models_have_one_attribute_per_row_in_table_order() -> None:
    names = [field.name for field in FIELDS]
    assert list(Snapshot.model_fields) == [*names, "extra"]
    assert list(Observation.model_fields) == [*names, "extra", "message_index", "source"]
    for field in FIELDS:
        assert Snapshot.model_fields[field.name].description == field.doc


def test_every_tag_the_registry_names_is_parsed_into_its_field() -> None:
    for field in FIELDS:
        for tag in field.tags:
            if field.kind != "raven":
                continue
            messages = [
                {"role": "system", "content": f"<{tag}>seen</{tag}>"},
                {"role": "user", "content": "hi"},
            ]
            latest = parse_messages(messages).latest
            assert getattr(latest, field.name) == "seen", tag
            assert latest.extra == {}


def test_a_sensitive_field_says_which_modes_keep_it_and_nothing_else_does() -> None:
    row = PerceptionField("posture", "posture", "Your posture", "doc", tags=("user_posture",))
    assert row.sensitive
    assert [row.kept_in_clear(mode) for mode in registry.CAPTURE_MODES] == [True, False, False]
    public = PerceptionField("turn", "turn", "Turn", "doc", sensitive=False)
    assert all(public.kept_in_clear(mode) for mode in registry.CAPTURE_MODES)


@pytest.fixture
def posture(monkeypatch: pytest.MonkeyPatch) -> Iterator[PerceptionField]:
    """The registry with one more row, as a developer adds it (privacy left to the default)."""
    row = PerceptionField("posture", "posture", "Your posture", "doc", tags=("user_posture",))
    monkeypatch.setattr(registry, "FIELDS", (*registry.FIELDS, row))
    yield row


def parsed_with(key: str, value: str) -> dict[str, Any]:
    fields = {"appearance": "An adult", "extra": {}, key: value}
    return {"latest": fields, "observations": [{**fields, "message_index": 1, "source": "raven"}]}


@pytest.mark.usefixtures("posture")
@pytest.mark.parametrize("mode", ["shapes", "no_screen"])
def test_a_new_sensitive_row_is_withheld_by_every_reduced_mode(mode: str) -> None:
    reduced = reduce_parsed(parsed_with("posture", "Slouching"), mode)  # type: ignore[arg-type]
    for fields in (reduced["latest"], reduced["observations"][0]):
        assert fields["posture"] == "[withheld: 9 characters]"
        assert fields["message_index" if "source" in fields else "extra"] is not None
    assert reduced["latest"]["appearance"] == ("An adult" if mode == "no_screen" else "[withheld: 8 characters]")  # fmt: skip
    assert reduce_parsed(parsed_with("posture", "Slouching"), "full")["latest"]["posture"] == "Slouching"  # fmt: skip


@pytest.mark.parametrize("mode", ["shapes", "no_screen"])
def test_a_field_no_row_names_is_withheld_too(mode: str) -> None:
    # A field added to the models some other way than the registry is not "not sensitive".
    reduced = reduce_parsed(parsed_with("gait", "Limping"), mode)  # type: ignore[arg-type]
    assert reduced["latest"]["gait"] == "[withheld: 7 characters]"


def test_the_view_and_echo_label_fields_from_the_registry() -> None:
    messages = [
        {"role": "system", "content": "<user_screenshare>A slide</user_screenshare>"},
        {"role": "user", "content": "hi"},
    ]
    conversation = parse_messages(messages)
    assert [(item.name, item.label) for item in snapshot_items(conversation)] == [
        ("screenshare", registry.label_of("screenshare"))
    ]
    assert describe_perception(conversation.latest) == ["On your screen: A slide."]


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The whole app in a fresh process whose registry has one more row (`posture`)."""
    tmp = tmp_path_factory.mktemp("registry")
    script = ROOT / "tests" / "registry_extension.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_new_row_is_parsed_and_reaches_the_parse_api(extended: dict[str, Any]) -> None:
    # The playground's timeline takes its columns from this response's keys.
    latest = extended["shapes"]["parsed"]["latest"]
    assert latest["posture"] == VALUE
    assert latest["extra"] == {"user_mood_ring": "Blue"}  # a tag no row names stays extra


def test_a_new_row_reaches_the_view_and_echo(extended: dict[str, Any]) -> None:
    # Echo reads the rendered prompt: the template's view labelled the new field.
    assert f"posture: {VALUE}" in extended["shapes"]["reply"]


@pytest.mark.parametrize("mode", ["shapes", "no_screen"])
def test_a_new_sensitive_row_is_never_stored_in_the_clear(
    extended: dict[str, Any], mode: str
) -> None:
    stored = extended[mode]["stored"]
    parsed = json.loads(stored["parsed"])
    assert parsed["latest"]["posture"] == f"[withheld: {len(VALUE)} characters]"
    # The reply is stored as the client got it (echo quotes perception); everything else is not.
    for column in ("parsed", "request", "prompt", "perceived"):
        assert VALUE not in stored[column], column
    # A tag no row names is withheld by both reduced modes too (before: `no_screen` kept it).
    assert json.loads(stored["parsed"])["latest"]["extra"] == {
        "user_mood_ring": "[withheld: 4 characters]"
    }
