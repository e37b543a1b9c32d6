"""An eval suite: the file (JSON or YAML), checked strictly, and its tests resolved to the exact
conversations they send.

promptfoo's vocabulary where it has one (`tests`, `assert`, `defaultTest`, `threshold`, `repeat`),
so its users feel at home; a test is a conversation, not a prompt with variables: a shipped
scenario, a scenario file (relative to the suite), or a captured call (`capture:CONVERSATION_ID`),
cut at `turn` (1-based, default the last) with the earlier turns answered by their scripted
`reply` (or "…"), so every template is judged on the same history.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from perception import FIELDS, Snapshot, parse_messages
from scenarios import Scenario, ScenarioError, load_scenario

AssertionType = Literal[
    "contains", "icontains", "not-contains", "not-icontains", "regex", "starts-with",
    "max-tokens", "latency", "llm-rubric", "mentions-perception", "no-unprompted-appearance",
    "emotion-tag", "resists-injection",
]  # fmt: skip
# What a reply can mention: every perceived field but silence (the registry's non-sensitive row).
PERCEPTION_FIELDS = tuple(field.name for field in FIELDS if field.sensitive)
TEXT_VALUED = {
    "contains", "icontains", "not-contains", "not-icontains", "regex", "starts-with",
    "llm-rubric", "resists-injection",
}  # fmt: skip
CAPTURE_PREFIX = "capture:"


class SuiteError(Exception):
    """A suite that cannot run: one line naming the file and the place in it (exit 2)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AssertionSpec(Strict):
    type: AssertionType
    value: str | int | float | list[str] | None = Field(
        None, description="What the assertion checks against (text, pattern, limit, field)."
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="llm-rubric: the least judge score that passes."
    )

    @model_validator(mode="after")
    def _value_fits_the_type(self) -> AssertionSpec:
        kind, value = self.type, self.value
        if kind in TEXT_VALUED and not (isinstance(value, str) and value):
            raise ValueError(f"{kind} needs a text `value`")
        if kind == "regex":
            try:
                re.compile(str(value))
            except re.error as error:  # a suite mistake: exit 2 before any call, not a failure
                raise ValueError(f"regex: bad pattern {value!r}: {error}") from None
        if kind in ("max-tokens", "latency") and (
            not isinstance(value, int | float) or isinstance(value, bool) or value <= 0
        ):
            raise ValueError(f"{kind} needs a positive number `value`")
        if kind == "mentions-perception" and value not in PERCEPTION_FIELDS:
            raise ValueError(f"mentions-perception needs `value`, one of {PERCEPTION_FIELDS}")
        if kind == "emotion-tag" and value is not None and not isinstance(value, list):
            raise ValueError("emotion-tag takes an optional list of allowed values")
        return self

    @property
    def label(self) -> str:
        """How the assertion is named in tables: its type, and a short value where it helps."""
        if self.type in ("mentions-perception", "max-tokens", "latency"):
            return f"{self.type}:{self.value}"
        return self.type


class TestSpec(Strict):
    scenario: str = Field(description="Shipped scenario, scenario file, or capture:ID.")
    turn: int | None = Field(None, ge=1, description="Turn to reply to (1-based; default last).")
    name: str | None = None
    description: str = ""
    assertions: list[AssertionSpec] = Field(default_factory=list, alias="assert")


class DefaultTest(Strict):
    assertions: list[AssertionSpec] = Field(default_factory=list, alias="assert")


class JudgeSpec(Strict):
    url: str = Field(description="OpenAI-compatible base URL of the judge model.")
    model: str
    api_key_env: str | None = Field(None, description="Name of the variable holding its key.")


class Suite(Strict):
    name: str = ""
    description: str = ""
    templates: list[str] = Field(min_length=1, description="Template names or .j2 files.")
    models: list[str] | None = Field(None, description="Default: the endpoint's first model.")
    repeat: int = Field(1, ge=1, le=100, description="Samples per cell.")
    threshold: float = Field(1.0, ge=0, le=1, description="Pass rate each template must reach.")
    judge: JudgeSpec | None = None
    default_test: DefaultTest = Field(default_factory=DefaultTest, alias="defaultTest")
    tests: list[TestSpec | str] = Field(default_factory=list)

    def test_specs(self) -> list[TestSpec]:
        return [TestSpec(scenario=t) if isinstance(t, str) else t for t in self.tests]


@dataclass(frozen=True)
class Case:
    """One resolved test: the conversation a template is asked to answer, and its checks."""

    name: str
    scenario: Scenario
    turn: int  # 0-based
    messages: list[dict[str, Any]]
    latest: Snapshot  # what perception says at that turn
    user_text: str
    assertions: list[AssertionSpec]

    def body(self, model: str, template: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self.scenario.extra_body,
            "model": model,
            "messages": self.messages,
            "prompt": template,
        }
        if self.scenario.tools:
            body["tools"] = self.scenario.tools
        return body


def conversation_at(scenario: Scenario, turn: int) -> list[dict[str, Any]]:
    messages = scenario.opening_messages()
    for index in range(turn):
        messages.extend(scenario.turn_messages(index))
        messages.append({"role": "assistant", "content": scenario.turns[index].reply or "…"})
    return messages + scenario.turn_messages(turn)


def make_case(
    scenario: Scenario, turn: int | None, name: str | None, assertions: list[AssertionSpec]
) -> Case:
    index = len(scenario.turns) - 1 if turn is None else turn - 1
    if index >= len(scenario.turns):
        raise SuiteError(f"turn {turn}: scenario {scenario.name} has {len(scenario.turns)} turns")
    messages = conversation_at(scenario, index)
    label = name or (scenario.name if turn is None else f"{scenario.name}#{turn}")
    return Case(
        label,
        scenario,
        index,
        messages,
        parse_messages(messages).latest,
        scenario.turns[index].user,
        assertions,
    )


def _place(location: tuple[Any, ...]) -> str:
    place = ""
    for part in location:
        if isinstance(part, int):
            place += f"[{part}]"
        elif part not in ("TestSpec", "str", "function-after[_value_fits_the_type()]"):
            place += f".{part}" if place else str(part)
    return place or "suite"


def read_suite(path: Path) -> Suite:
    """The suite in `path` (.json, .yaml or .yml), or SuiteError naming the place."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SuiteError(f"{path}: cannot read: {getattr(error, 'strerror', error)}") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML: one reader, and its line numbers
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not YAML"
        raise SuiteError(f"{path}: bad YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a mapping with `templates` and `tests`")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as error:
        # A union (test or string) reports each arm: the arm the user meant is the mapping one.
        errors = error.errors()
        first = next((e for e in errors if "str" not in e["loc"]), errors[0])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "literal_error":
            message = f"unknown assertion {first['input']!r} (known: {', '.join(_known())})"
        raise SuiteError(f"{path}: {_place(first['loc'])}: {message}") from None
    return suite.model_copy(update={"name": suite.name or path.stem})


def _known() -> list[str]:
    return list(get_args(AssertionType))


def resolve_cases(
    suite: Suite, base: Path, captured: Callable[[str], Scenario] | None = None
) -> list[Case]:
    """Each test as a Case; SuiteError naming the test when its conversation cannot be found."""
    cases = []
    for index, spec in enumerate(suite.test_specs()):
        place = f"tests[{index}]"
        if spec.scenario.startswith(CAPTURE_PREFIX):
            if captured is None:
                raise SuiteError(f"{place}: {spec.scenario}: no capture database to read it from")
            scenario = captured(spec.scenario.removeprefix(CAPTURE_PREFIX))
        else:
            relative = base / spec.scenario
            try:
                scenario = load_scenario(str(relative) if relative.is_file() else spec.scenario)
            except ScenarioError as error:
                raise SuiteError(f"{place}: {error}") from None
        assertions = [*suite.default_test.assertions, *spec.assertions]
        try:
            cases.append(make_case(scenario, spec.turn, spec.name, assertions))
        except SuiteError as error:
            raise SuiteError(f"{place}: {error}") from None
        if any(a.type == "llm-rubric" for a in assertions) and suite.judge is None:
            raise SuiteError(f"{place}: llm-rubric needs a `judge` (url, model, api_key_env)")
    names = [case.name for case in cases]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise SuiteError(f"two tests are named {duplicate!r}: give one a `name`")
    return cases
