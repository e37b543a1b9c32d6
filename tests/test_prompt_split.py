"""A/B splits of templates over conversations (`PERCEPTION_LLM_PROMPT_SPLIT`, issue 25)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from server.app import create_app
from server.completion.prompt_split import SplitError, parse_split, split_point, split_template
from tests.conftest import ROOT, load_sample, make_settings

RAVEN = load_sample("raven0-documented")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("default=50,minimal=50", (("default", 50), ("minimal", 50))),
        (" default = 1 ".replace(" = ", "="), (("default", 1),)),
        ("a=1,b=3,", (("a", 1), ("b", 3))),
        ("default=0,minimal=10", (("default", 0), ("minimal", 10))),
    ],
)
def test_parse_split(text: str, expected: Any) -> None:
    assert parse_split(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default", "not TEMPLATE=WEIGHT"),
        ("default=fifty", "not TEMPLATE=WEIGHT"),
        ("default=-1", "not TEMPLATE=WEIGHT"),
        ("default=1,default=2", "listed twice"),
        ("default=0,minimal=0", "add up to 0"),
        ("../etc=1", "not TEMPLATE=WEIGHT"),
    ],
)
def test_bad_split_is_refused(text: str, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        parse_split(text)
    with pytest.raises(ValidationError, match=message):
        make_settings(prompt_split=text)


def test_the_arm_is_the_same_in_every_process() -> None:
    """Python's hash() is salted per process; the split must not be."""
    ids = [f"conv-{i}" for i in range(50)]
    code = (
        "from server.completion.prompt_split import parse_split, split_template; "
        f"print([split_template(parse_split('default=1,minimal=1'), c) for c in {ids!r}])"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outputs.add(result.stdout)
    here = str([split_template(parse_split("default=1,minimal=1"), c) for c in ids])
    assert outputs == {here + "\n"}
    assert "'default'" in here and "'minimal'" in here  # both arms are used


@pytest.mark.parametrize("weights", [(50, 50), (1, 3), (10, 20, 70)])
def test_shares_follow_the_weights_over_1000_conversations(weights: tuple[int, ...]) -> None:
    split = tuple((f"t{i}", w) for i, w in enumerate(weights))
    counts = Counter(split_template(split, f"conversation-{n}") for n in range(1000))
    for name, weight in split:
        assert abs(counts[name] / 1000 - weight / sum(weights)) <= 0.05, counts


def test_zero_weight_arm_gets_nothing_and_points_stay_in_range() -> None:
    split = (("off", 0), ("on", 1))
    assert {split_template(split, str(n)) for n in range(300)} == {"on"}
    assert all(0 <= split_point(str(n)) < 1 for n in range(300))


def test_no_conversation_id_means_no_arm() -> None:
    assert split_template((("a", 1),), None) is None
    assert split_template((("a", 1),), "") is None
    assert split_template((), "conv") is None


def _rendered(client: TestClient, headers: dict[str, str], **body: Any) -> str:
    response = client.post("/v1/prompts/render", json={**RAVEN, **body}, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["prompt"])


def test_precedence_explicit_choice_wins_over_the_split() -> None:
    settings = make_settings(prompt="default", prompt_split="minimal=1,passthrough=1")
    split = settings.split
    arm_a = next(f"c{n}" for n in range(100) if split_template(split, f"c{n}") == "minimal")
    arm_b = next(f"c{n}" for n in range(100) if split_template(split, f"c{n}") == "passthrough")
    with TestClient(create_app(settings)) as client:
        assert _rendered(client, {"conversation-id": arm_a}) == "minimal"
        assert _rendered(client, {"conversation_id": arm_b}) == "passthrough"
        assert _rendered(client, {}) == "default"  # no id: the setting
        assert _rendered(client, {"conversation-id": arm_a}, prompt="default") == "default"
        headers = {"conversation-id": arm_a, "X-Prompt-Template": "passthrough"}
        assert _rendered(client, headers) == "passthrough"
        response = client.post(
            "/v1/prompts/render?prompt=default", json=RAVEN, headers={"conversation-id": arm_b}
        )
        assert response.json()["prompt"] == "default"


def test_a_split_naming_an_unknown_template_stops_start_up() -> None:
    from prompts.templates import TemplateError

    with pytest.raises(TemplateError, match="fancy"):
        create_app(make_settings(prompt_split="default=1,fancy=1"))


def test_serve_refuses_an_unknown_split_template_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPTION_LLM_")}
    env["PERCEPTION_LLM_PROMPT_SPLIT"] = "default=1,fancy=1"
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "fancy" in result.stderr and "Traceback" not in result.stderr
