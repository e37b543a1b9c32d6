"""A/B in production end to end (issue 25): a capturing server with a split records each call's
arm, and `perception-llm calls stats --by template` compares the arms over real conversations
only (our tools' marked calls and Tavus' configuration check left out)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from scenarios.model import EMOTION_RULE
from server.cli import main
from server.completion.prompt_split import parse_split, split_template
from server.inprocess import live_server
from tests.conftest import make_settings
from tests.test_capture import written
from tests.test_evals_cli import RAVEN_TURN, ask

PHOENIX = [{"role": "system", "content": f"You are Ada. {EMOTION_RULE}"}, *RAVEN_TURN[1:]]


def test_split_arms_are_recorded_and_compared(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    settings = make_settings(capture=url, prompt_split="default=1,minimal=1")
    conversations = [f"conv-{n}" for n in range(12)]
    with live_server(settings) as server:
        for n, conversation in enumerate(conversations):
            for _ in range(1 + n % 2):  # 18 calls in all
                ask(server.url, conversation, PHOENIX)
        ask(server.url, "conv-0", PHOENIX, **{"X-Prompt-Template": "passthrough"})  # explicit
        ask(server.url, "eval-1", PHOENIX, **{"X-Perception-LLM-Tool": "eval"})
        ask(server.url, "tavus-openai-compat-test", PHOENIX)
        written(server, 21)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        rows = connection.execute(
            "SELECT conversation_id, template, tool, emotion_repaired FROM captured_calls"
        ).fetchall()
    split = parse_split("default=1,minimal=1")
    for conversation, template, tool, repaired in rows:
        if conversation.startswith("conv-") and template != "passthrough":
            assert template == split_template(split, conversation)
            assert repaired == 1  # echo writes no tag: the guarantee inserted one
        assert (tool == "eval") == (conversation == "eval-1")

    assert main(["calls", "stats", "--by", "template", "--db", url, "--json"]) == 0
    arms: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    by_name = {arm["template"]: arm for arm in arms}
    assert set(by_name) == {"default", "minimal", "passthrough"}
    expected_calls = {
        name: sum(
            1 + n % 2 for n, c in enumerate(conversations) if split_template(split, c) == name
        )
        for name in ("default", "minimal")
    }
    for name, calls in expected_calls.items():
        assert by_name[name]["calls"] == calls
        assert by_name[name]["emotion_repairs"] == 1.0
        assert by_name[name]["interrupted"] == 0.0
        low, high = by_name[name]["ttft_p50_ms_ci"]
        assert low <= by_name[name]["ttft_p50_ms"] <= high
    assert sum(by_name[n]["conversations"] for n in ("default", "minimal")) == 12
    assert by_name["passthrough"]["calls"] == 1

    assert main(["calls", "stats", "--db", url]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["template", "conversations", "calls"]
    assert "eval-1" not in table and "bootstrap over conversations" in table

    assert main(["calls", "stats", "--db", url, "--since", "2999-01-01"]) == 0
    assert "no real calls captured since 2999-01-01" in capsys.readouterr().out
    assert main(["calls", "stats", "--db", url, "--since", "yesterday"]) == 2
    assert "--since takes 7d, 24h, 30m or a date" in capsys.readouterr().err


def test_stats_by_replica_name_each_replica_and_the_unnamed_calls(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Issue 26: `calls stats` shows the replica that served the calls (calls recorded before
    replicas had names group as `unnamed`)."""
    url = f"sqlite:///{tmp_path}/calls.db"
    for replica, conversations in (("pod-a", ["c1", "c2"]), ("pod-b", ["c3"])):
        with live_server(make_settings(capture=url, replica=replica)) as server:
            for conversation in conversations:
                ask(server.url, conversation, PHOENIX)
            written(server, len(conversations))
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        connection.execute("UPDATE captured_calls SET replica = NULL WHERE conversation_id = 'c2'")
    assert main(["calls", "stats", "--by", "replica", "--db", url, "--json"]) == 0
    arms = {arm["replica"]: arm for arm in json.loads(capsys.readouterr().out)}
    assert {name: arm["calls"] for name, arm in arms.items()} == {
        "pod-a": 1,
        "pod-b": 1,
        "unnamed": 1,
    }
