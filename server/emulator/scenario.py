"""Scenario files, and encoding each scripted turn exactly the way Tavus sends it.

A scenario is JSON (see examples/scenarios/ and the README):

    {"name": "...", "description": "...", "perception": "raven" | "raven-1" | "basic" | "off",
     "system_prompt": "...", "context": "...", "greeting": "...",
     "model": "...", "tools": [...], "extra_body": {...},
     "turns": [{"user": "...", "appearance": "...", "emotions": "...", "screen": "...",
                "audio": "...", "visual_scene": "...", "perception": "...", "tool_result": "..."}]}

Encoding follows DESIGN.md: raven puts a system message of `<user_*>` blocks right before the
user turn; raven-1 adds a leading `<user_audio_analysis>` to the user turn; Basic sends
`USER_SPEECH: … VISUAL_SCENE: …` (the first turn without a prefix); off sends plain speech.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PerceptionMode = Literal["raven", "raven-1", "basic", "off"]
SCENARIO_DIR = Path(__file__).resolve().parents[2] / "examples" / "scenarios"

# What Tavus prepends to the persona's prompt when raven is on (paraphrased, tags in prose).
RAVEN_PREAMBLE = (
    "You are in a live video call and can see the user. You will receive the user's appearance "
    "inside the <user_appearance></user_appearance> tag, their emotions inside the "
    "<user_emotions></user_emotions> tag and their shared screen inside the "
    "<user_screenshare></user_screenshare> tag."
)
BASIC_PREAMBLE = (
    "You will get user messages with two identifiers, 'USER SPEECH:' and 'VISUAL SCENE:'. "
    "Only use the VISUAL SCENE if the user asks what you see."
)


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
    turns: list[Turn] = Field(min_length=1)

    def opening_messages(self) -> list[dict[str, Any]]:
        """Persona system text (with Tavus' preamble for the mode) and the greeting."""
        persona = "\n\n".join(part for part in (self.system_prompt, self.context) if part)
        if self.perception in ("raven", "raven-1"):
            persona = f"{persona}\n\n{RAVEN_PREAMBLE}"
        elif self.perception == "basic":
            persona = f"{persona}\n\n{BASIC_PREAMBLE}"
        messages: list[dict[str, Any]] = [{"role": "system", "content": persona}]
        if self.greeting:
            messages.append({"role": "assistant", "content": self.greeting})
        return messages

    def turn_messages(self, index: int, speech: str | None = None) -> list[dict[str, Any]]:
        """The messages Tavus adds for turn `index` (`speech` replaces the text, for partials)."""
        turn = self.turns[index]
        text = turn.user if speech is None else speech
        mode = turn.perception or self.perception
        messages: list[dict[str, Any]] = []
        if mode in ("raven", "raven-1"):
            blocks = [
                f"<{tag}>{value}</{tag}>"
                for tag, value in (
                    ("user_appearance", turn.appearance),
                    ("user_emotions", turn.emotions),
                    ("user_screenshare", turn.screen),
                )
                if value
            ]
            if blocks:
                messages.append({"role": "system", "content": " ".join(blocks)})
            if mode == "raven-1" and turn.audio:
                text = f"<user_audio_analysis>{turn.audio}</user_audio_analysis>\n{text}"
        elif mode == "basic" and (index > 0 or turn.visual_scene):
            text = f"USER_SPEECH: {text}"
            if turn.visual_scene:
                text += f" VISUAL_SCENE: {turn.visual_scene}"
        messages.append({"role": "user", "content": text})
        return messages


def scenario_request(scenario: Scenario) -> dict[str, Any]:
    """The request Tavus would send at the scenario's last turn, earlier turns answered with
    their `reply` (or "…"): for the playground's composer and examples."""
    messages = scenario.opening_messages()
    for index, turn in enumerate(scenario.turns):
        messages.extend(scenario.turn_messages(index))
        if index < len(scenario.turns) - 1:
            messages.append({"role": "assistant", "content": turn.reply or "…"})
    body: dict[str, Any] = {
        "model": scenario.model or "echo",
        "stream": True,
        "messages": messages,
        **scenario.extra_body,
    }
    if scenario.tools:
        body["tools"] = scenario.tools
    return body


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name (examples/scenarios/NAME.json) or any JSON file."""
    path = Path(name_or_path)
    if not path.exists():
        shipped = SCENARIO_DIR / f"{name_or_path}.json"
        if not shipped.exists():
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
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.json")) if SCENARIO_DIR.is_dir() else []
