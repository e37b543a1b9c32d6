"""`perception-llm calls`: the real entry point in a subprocess, reading a store a real server
wrote; a captured call exported as a scenario and a fixture must work as such."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from perception import parse_messages
from scenarios import load_scenario
from server.inprocess import live_server
from server.services import services
from tests.conftest import FIXTURES, make_settings
from tests.test_capture import MESSAGES, written


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPTION_LLM_")}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('calls')}/calls.db"
    with live_server(make_settings(capture=url, replica="replica-c")) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0)
        for end in (6, len(MESSAGES)):  # the call grows: its latest request has every turn
            list(
                client.chat.completions.create(
                    model="echo",
                    messages=MESSAGES[:end],
                    stream=True,
                    extra_headers={"conversation-id": "conv-cli"},
                )
            )
        written(server, 2)
        assert services(server.app).capture is not None
    return url


def test_list_and_show(store: str) -> None:
    conversations = cli("calls", "list", "--db", store)
    assert conversations.returncode == 0 and "conv-cli" in conversations.stdout
    assert "2 calls" in conversations.stdout and "1 replica" in conversations.stdout
    timeline = cli("calls", "list", "conv-cli", "--db", store)
    assert timeline.stdout.count("completed") == 2
    assert timeline.stdout.count("replica-c") == 2  # which replica served each call
    assert "What does the white arc mean?" in timeline.stdout
    shown = json.loads(cli("calls", "show", "2", "--db", store).stdout)
    assert shown["request"]["messages"] == MESSAGES and shown["outcome"] == "completed"
    assert shown["replica"] == "replica-c"


def test_export_as_scenario_replays_the_call(store: str, tmp_path: Path) -> None:
    out = tmp_path / "captured.json"
    result = cli(
        "calls", "export", "conv-cli", "--as", "scenario", "--out", str(out), "--db", store
    )
    assert result.returncode == 0, result.stderr
    scenario = load_scenario(str(out))
    assert scenario.perception == "raven" and scenario.phoenix4
    assert scenario.greeting == MESSAGES[3]["content"]
    assert [turn.user for turn in scenario.turns] == [
        "Yes. Where do we start?",
        "What does the white arc mean?",
    ]
    assert scenario.turns[1].screen == "A cockpit diagram with the airspeed indicator circled."
    assert scenario.turns[0].reply == MESSAGES[6]["content"]
    assert "You are Nova, a flight instructor." in scenario.system_prompt
    assert "video conference call" not in scenario.system_prompt  # the scenario adds it back
    # Re-encoded as Tavus would send it, the call parses to the same perception.
    replayed = parse_messages(scenario.opening_messages() + scenario.turn_messages(1))
    original = parse_messages(MESSAGES)
    assert replayed.latest.screenshare == original.latest.screenshare


def test_export_as_fixture_is_a_passing_parser_fixture(store: str) -> None:
    result = cli("calls", "export", "conv-cli", "--as", "fixture", "--db", store)
    fixture = json.loads(result.stdout)
    assert fixture["source"].startswith("Captured by perception-llm")
    from tests.test_perception_parse import summary

    assert summary(fixture["messages"]) == fixture["expected"]


def test_replay_through_templates(store: str) -> None:
    result = cli("calls", "replay", "conv-cli", "--prompts", "default,minimal", "--db", store)
    assert result.returncode == 0, result.stderr
    assert "default" in result.stdout and "minimal" in result.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["list"], "no capture database"),
        (["list", "--db", "mysql://x"], "cannot use capture database"),
        (["show", "abc", "--db", "sqlite:///{tmp}/x.db"], "show takes a call id"),
        (["export", "nobody", "--db", "sqlite:///{tmp}/x.db"], "no captured calls"),
    ],
)
def test_user_errors_are_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    result = cli("calls", *[arg.replace("{tmp}", str(tmp_path)) for arg in args])
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and result.stderr.count("\n") == 1


def test_fixture_shape_matches_the_shipped_fixtures() -> None:
    shipped = json.loads((FIXTURES / "perception" / "tavus-silence.json").read_text())
    assert {"description", "source", "evidence", "messages", "expected"} <= set(shipped)
