"""Scenario files, and encoding each scripted turn exactly the way Tavus sends it.

A scenario is JSON (see scenarios/library/ and the README):

    {"name": "...", "description": "...", "perception": "raven" | "raven-1" | "basic" | "off",
     "system_prompt": "...", "context": "...", "greeting": "...",
     "model": "...", "tools": [...], "extra_body": {...},
     "turns": [{"user": "...", "appearance": "...", "emotions": "...", "screen": "...",
                "audio": "...", "visual_scene": "...", "perception": "...", "tool_result": "..."}]}

Encoding follows what Tavus sends: raven puts a system message of `<user_*>` blocks right before the
user turn; raven-1 adds a leading `<user_audio_analysis>` to the user turn; Basic sends
`USER_SPEECH: … VISUAL_SCENE: …` (the first turn without a prefix); off sends plain speech.

`"layout": "user"` sends raven the second way Tavus was seen to (issue 22; github.com/
harrydaihaolin/Jarvis, proxy/src/translate.test.js): perception as perception-only *user*
messages (the appearance inside `<additional_system_instructions>`, the other blocks bare,
values wrapped in newlines), raven-1 audio as an audio-only user message before the speech, and
the `language` rule as `<additional_system_instructions>respond in …</…>`.
"""

from __future__ import annotations

import json
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perception.fields import AUDIO_TAG, FIELDS, raven_fields
from perception.speech import SCENE_MARKER, SILENCE_TURN, SPEECH_MARKER
from perception.tavus_rules import BASIC_PREAMBLE as TAVUS_BASIC_PREAMBLE
from perception.tavus_rules import RAVEN_PREAMBLE
from perception.user_layout import WRAPPER

PerceptionMode = Literal["raven", "raven-1", "basic", "off"]
Layout = Literal["system", "user"]

# Tavus' stored Basic system message goes on after the published preamble with its own speech
# rules (tests/fixtures/tavus/preambles.json); the preambles themselves are perception's.
BASIC_PREAMBLE = (
    f"{TAVUS_BASIC_PREAMBLE} Reply in short sentences, talk to the user in a casual way."
    "Respond only in english."
)


# Phoenix-4's rule as a public integration logged it (tests/fixtures/tavus/emotion-rule.json).
EMOTION_RULE = 'EVERY RESPONSE MUST BEGIN WITH AN EMOTION TAG such as <emotion value="content"/>.'
SILENCE = SILENCE_TURN  # Tavus' user turn when the user stays silent


class ScenarioError(Exception):
    """A scenario that cannot be loaded; the message names the file and the problem."""


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(description="What the user says.")
    appearance: str | None = None
    emotions: str | None = None
    screen: str | None = Field(None, description="Screen-share summary (raven).")
    audio: str | None = Field(None, description="raven-1 audio analysis.")
    visual_scene: str | None = Field(None, description="Basic perception scene.")
    perception: PerceptionMode | None = Field(None, description="Override the scenario's mode.")
    tool_result: str | None = Field(None, description="Result returned if the reply calls a tool.")
    reply: str | None = Field(
        None, description="The persona's reply after this turn, when composing a fixed history."
    )


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    perception: PerceptionMode = "raven"
    system_prompt: str
    context: str = ""
    greeting: str | None = None
    model: str | None = None
    tools: list[dict[str, Any]] | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)
    phoenix4: bool = Field(
        False,
        description="A Phoenix-4 replica: Tavus adds its emotion-tag rule to the system text.",
    )
    opens_before_user: bool = Field(
        False, description="Tavus calls once before the user speaks (system text and greeting)."
    )
    layout: Layout = Field(
        "system",
        description="Where raven perception and Tavus' rules go: system or user-role messages.",
    )
    language: str | None = Field(
        None, description="Tavus' language rule (`respond in …`), e.g. english."
    )
    turns: list[Turn] = Field(min_length=1)

    def opening_messages(self) -> list[dict[str, Any]]:
        """Persona system text (with Tavus' preamble for the mode) and the greeting."""
        persona = " ".join(part for part in (self.system_prompt, self.context) if part)
        if self.phoenix4:
            persona = f"{persona} {EMOTION_RULE}"
        if self.perception in ("raven", "raven-1"):
            persona = f"{RAVEN_PREAMBLE} \n{persona}"
        elif self.perception == "basic":
            persona = f"{BASIC_PREAMBLE} {persona}"
        messages: list[dict[str, Any]] = [{"role": "system", "content": persona}]
        if self.language:
            rule = f"respond in {self.language}"
            if self.layout == "user":
                messages.append({"role": "user", "content": f"<{WRAPPER}>{rule}</{WRAPPER}>"})
            else:
                messages.append({"role": "system", "content": rule})
        if self.greeting:
            messages.append({"role": "assistant", "content": self.greeting})
        return messages

    def turn_messages(self, index: int, speech: str | None = None) -> list[dict[str, Any]]:
        """The messages Tavus adds for turn `index` (`speech` replaces the text, for partials)."""
        turn = self.turns[index]
        text = turn.user if speech is None else speech
        mode = turn.perception or self.perception
        messages: list[dict[str, Any]] = []
        if mode in ("raven", "raven-1") and self.layout == "user":
            messages.extend(_user_role_perception_messages(turn, mode))
        elif mode in ("raven", "raven-1"):
            blocks = [f"<{tag}>{value}</{tag}>" for tag, value in _raven_values(turn)]
            if blocks:
                messages.append({"role": "system", "content": " ".join(blocks)})
            if mode == "raven-1" and turn.audio:
                text = f"<{AUDIO_TAG}>{turn.audio}</{AUDIO_TAG}>\n{text}"
        elif mode == "basic" and (index > 0 or turn.visual_scene):
            text = f"{SPEECH_MARKER} {text}"
            if turn.visual_scene:
                text += f" {SCENE_MARKER} {turn.visual_scene}"
        messages.append({"role": "user", "content": text})
        return messages


# A turn's key for a field, where the scenario file's key is shorter than the field's name.
_TURN_KEYS = {"screenshare": "screen"}


def raven_turn_keys() -> dict[str, str]:
    """Field name → the turn key that scripts it, for every raven block field (registry order)."""
    return {field.name: _TURN_KEYS.get(field.name, field.name) for field in raven_fields()}


APPEARANCE_TAG = next(field.tags[0] for field in FIELDS if field.name == "appearance")


def _raven_values(turn: Turn) -> list[tuple[str, str]]:
    """(tag, value) of each raven block field the turn scripts, in the registry's order."""
    keys = raven_turn_keys()
    pairs = [(field.tags[0], getattr(turn, keys[field.name], None)) for field in raven_fields()]
    return [(tag, value) for tag, value in pairs if value]


def _user_role_perception_messages(turn: Turn, mode: PerceptionMode) -> list[dict[str, Any]]:
    """One turn's perception the user-role way (see the module docstring)."""
    messages = []
    for tag, value in _raven_values(turn):
        block = f"<{tag}>\n{value}\n</{tag}>"
        if tag == APPEARANCE_TAG:  # the one block Tavus was seen to wrap
            block = f"<{WRAPPER}>{block}</{WRAPPER}>"
        messages.append({"role": "user", "content": block})
    if mode == "raven-1" and turn.audio:
        audio = f"<{AUDIO_TAG}>{turn.audio}</{AUDIO_TAG}>"
        messages.append({"role": "user", "content": audio})
    return messages


def scenario_request(scenario: Scenario, default_model: str = "echo") -> dict[str, Any]:
    """The request Tavus would send at the scenario's last turn, earlier turns answered with
    their `reply` (or "…"): for the playground's composer and examples. `default_model` names
    the model when the scenario does not (the playground passes the server's response model)."""
    messages = scenario.opening_messages()
    for index, turn in enumerate(scenario.turns):
        messages.extend(scenario.turn_messages(index))
        if index < len(scenario.turns) - 1:
            messages.append({"role": "assistant", "content": turn.reply or "…"})
    body: dict[str, Any] = {
        "model": scenario.model or default_model,
        "stream": True,
        "messages": messages,
        **scenario.extra_body,
    }
    if scenario.tools:
        body["tools"] = scenario.tools
    return body


def _library() -> Traversable:
    return files("scenarios").joinpath("library")


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name (scenarios/library/NAME.json) or any JSON file."""
    path: Path | Traversable = Path(name_or_path)
    if not path.is_file():
        shipped = _library().joinpath(f"{name_or_path}.json")
        if name_or_path not in shipped_scenarios():
            known = ", ".join(shipped_scenarios()) or "none"
            raise ScenarioError(
                f"no scenario file or shipped scenario {name_or_path!r} (shipped: {known})"
            )
        path = shipped
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read: {error}") from None
    except json.JSONDecodeError as error:
        raise ScenarioError(f"{path}: not JSON: {error.msg} at line {error.lineno}") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "scenario"
        raise ScenarioError(f"{path}: {where}: {first['msg']}") from None


def shipped_scenarios() -> list[str]:
    return sorted(
        entry.name.removesuffix(".json")
        for entry in _library().iterdir()
        if entry.name.endswith(".json")
    )
