"""`perception-llm simulate` and `compare`, run as the real command against loopback servers:
this server (offline responder) and deliberately broken OpenAI look-alikes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scenarios import load_scenario, shipped_scenarios
from scenarios.model import SILENCE
from tests.conftest import make_settings
from tests.fake_upstream import FakeUpstream, Reply, chunk, text_reply
from tests.live import running_server


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with running_server(make_settings(api_key="sim-key")) as url:
        yield url + "/v1"


def check_names(report: dict[str, Any], ok: bool) -> set[str]:
    return {check["name"] for check in report["checks"] if check["ok"] is ok}


@pytest.mark.parametrize("scenario", shipped_scenarios())
def test_every_shipped_scenario_passes_against_this_server(server_url: str, scenario: str) -> None:
    result = cli(
        "simulate", "--url", server_url, "--api-key", "sim-key", "--scenario", scenario, "--json"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and check_names(report, False) == set()
    turns = load_scenario(scenario).turns
    assert [t["user"] for t in report["turns"]] == [t.user for t in turns]
    tagged = load_scenario(scenario).phoenix4  # replies then begin with an emotion tag
    for turn in report["turns"]:
        reply = turn["reply"]
        said = "You stayed silent." if turn["user"] == SILENCE else "You said:"
        if turn["tool_calls"]:  # echo called the tool the turn names, then quoted its result
            said = turn["tool_calls"][0]["function"]["name"] + " returned:"
        if tagged:
            assert re.match(r'<emotion value="[a-z]+"/> ', reply), reply
            reply = reply.split("/> ", 1)[1]
        assert reply.startswith(said) and turn["ttft_ms"] is not None
    assert "turn 1/" in result.stderr  # progress stays visible with --json


def test_speculative_abandons_partials_and_the_conversation_grows(server_url: str) -> None:
    result = cli(
        "simulate",
        "--url",
        server_url,
        "--api-key",
        "sim-key",
        "--scenario",
        "raven1-sarcasm",
        "--speculative",
    )
    assert result.returncode == 0, result.stdout
    assert "speculative requests abandoned" in result.stdout
    assert "voice: The user sounded sarcastic and flat" in result.stdout
    assert "the endpoint meets the contract Tavus relies on" in result.stdout


def test_headers_and_query_reach_the_endpoint() -> None:
    with FakeUpstream().serving() as fake:
        cli(
            "simulate",
            "--url",
            fake.base_url,
            "--scenario",
            "basic-story",
            "--header",
            "x-persona=p1",
            "--query",
            "api-version=2024",
            "--json",
        )
        first = fake.wait_for_requests(1)
    assert first.headers["x-persona"] == "p1" and first.query == {"api-version": "2024"}
    assert first.headers["conversation-id"].startswith("sim-")
    assert first.headers["authorization"] == "Bearer not-needed"
    assert first.body["stream"] is True
    assert first.body["model"] == "up-model"  # no --model: the endpoint's own listed model
    assert first.body["messages"][-1] == {"role": "user", "content": "Hello, tell me a story."}


BROKEN = {
    "missing-done": (
        Reply(
            steps=[
                ("data", chunk({"role": "assistant", "content": "hi"})),
                ("data", chunk({}, "stop")),
            ],
            done=False,
        ),
        "done_terminator",
    ),
    "no-role": (
        Reply(steps=[("data", chunk({"content": "hi"})), ("data", chunk({}, "stop"))]),
        "role_first",
    ),
    "id-lines": (
        Reply(
            steps=[
                (
                    "raw",
                    b"id: 7\nevent: message\ndata: "
                    + json.dumps(chunk({"role": "assistant", "content": "hi"})).encode()
                    + b"\n\n",
                ),
                ("data", chunk({}, "stop")),
            ]
        ),
        "sse_framing",
    ),
    "http-500": (Reply(status=500), "http_status"),
    "two-finish-reasons": (
        Reply(
            steps=[
                ("data", chunk({"role": "assistant", "content": "a"}, "stop")),
                ("data", chunk({}, "stop")),
            ]
        ),
        "single_finish_reason",
    ),
    "changing-id": (
        Reply(
            steps=[
                ("data", chunk({"role": "assistant", "content": "a"})),
                ("data", {**chunk({}, "stop"), "id": "other"}),
            ]
        ),
        "constant_id",
    ),
    "bad-tool-delta": (
        Reply(
            steps=[
                (
                    "data",
                    chunk({"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}),
                ),
                ("data", chunk({}, "tool_calls")),
            ]
        ),
        "tool_call_deltas",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_endpoints_are_caught(case: str) -> None:
    reply, failing_check = BROKEN[case]
    with FakeUpstream().serving() as fake:
        fake.script = [reply]
        result = cli("simulate", "--url", fake.base_url, "--scenario", "raven-cooking", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert not report["ok"]
    assert failing_check in check_names(report, False)


def test_a_correct_fake_passes_the_stream_checks() -> None:
    with FakeUpstream().serving() as fake:  # the fake's default reply is well-formed
        result = cli("simulate", "--url", fake.base_url, "--scenario", "raven-cooking", "--json")
    report = json.loads(result.stdout)
    # It answers the bad request with a stream too, so only that probe fails; Tavus never sends
    # one, so the run passes (exit 0) with the check reported as advisory.
    assert check_names(report, False) == {"error_body"}
    assert result.returncode == 0 and report["ok"]
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert statuses["tool_call_deltas"] == "not exercised"  # no tool was ever called
    assert statuses["emotion_tag"] == "not exercised"  # the scenario has no Phoenix-4 rule
    with FakeUpstream().serving() as fake:
        text = cli("simulate", "--url", fake.base_url, "--scenario", "raven-cooking").stdout
    assert "warn a bad request gets an OpenAI error body (advisory" in text
    assert "-- " in text and "(not exercised)" in text


def test_the_emotion_contract_is_checked_and_perception_llm_keeps_it() -> None:
    """A model that ignores Phoenix-4's rule fails the check; the same model behind
    perception-llm passes, because the server guarantees the tag."""
    with FakeUpstream().serving() as fake:
        direct = cli(
            "simulate", "--url", fake.base_url, "--scenario", "phoenix4-emotions", "--json"
        )
        assert direct.returncode == 1
        assert "emotion_tag" in check_names(json.loads(direct.stdout), False)
        with running_server(make_settings(upstream_base_url=fake.base_url)) as url:
            relayed = cli(
                "simulate", "--url", url + "/v1", "--scenario", "phoenix4-emotions", "--json"
            )
        assert relayed.returncode == 0, relayed.stdout
        report = json.loads(relayed.stdout)
        assert {c["name"]: c["status"] for c in report["checks"]}["emotion_tag"] == "ok"


def test_speculative_retries_share_one_upstream_call() -> None:
    with FakeUpstream().serving() as fake:
        # The model thinks for 0.3 s: Tavus' retry arrives while the first request is in flight.
        fake.script = [Reply(steps=[("wait", 0.3), *text_reply("Sure,", " go", " on.").steps])]
        settings = make_settings(upstream_base_url=fake.base_url, upstream_model="up-model")
        with running_server(settings) as url:
            result = cli(
                "simulate",
                "--url",
                url + "/v1",
                "--scenario",
                "raven-cooking",
                "--speculative",
                "--json",
            )
        report = json.loads(result.stdout)
        assert result.returncode == 0, result.stdout
        statuses = {c["name"]: c["status"] for c in report["checks"]}
        assert statuses["identical_retry"] == "ok"
        assert report["upstream_calls_saved"] >= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "http://127.0.0.1:9/v1"], "cannot reach"),
        (
            ["--scenario", "no-such-scenario"],
            "no scenario file or shipped scenario 'no-such-scenario'",
        ),
        (["--header", "novalue"], "--header takes K=V"),
    ],
)
def test_user_errors_are_one_line_with_status_2(
    server_url: str, args: list[str], message: str
) -> None:
    base = ["--url", server_url, "--api-key", "sim-key"]
    result = cli("simulate", *base, *args)
    assert result.returncode == 2
    assert (
        message in result.stderr
        and result.stderr.count("\n") == 1
        and "Traceback" not in result.stderr
    )


def test_wrong_key_is_status_2(server_url: str) -> None:
    result = cli("simulate", "--url", server_url, "--api-key", "wrong")
    assert result.returncode == 2 and "refused the API key (HTTP 401)" in result.stderr


def test_bad_scenario_file_is_status_2(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps({"name": "x", "system_prompt": "p", "turns": [{"user": "hi", "mood": "?"}]})
    )
    result = cli("simulate", "--url", "http://127.0.0.1:9/v1", "--scenario", str(path))
    assert result.returncode == 2 and "turns.0.mood" in result.stderr


def test_compare_against_a_url_writes_a_markdown_report(server_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    result = cli(
        "compare",
        "raven-cooking",
        "basic-story",
        "--prompts",
        "default,minimal,passthrough",
        "--url",
        server_url,
        "--api-key",
        "sim-key",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "raven-cooking · minimal · turn 3/3 answered by" in result.stderr
    text = out.read_text()
    assert text.count("| turn | user | default | minimal | passthrough |") == 2
    totals = [line for line in text.splitlines() if "prompt tokens, total" in line]
    tokens = [int(n) for n in totals[0].strip("| ").split(" | ")[1:]]
    assert len(tokens) == 3 and all(n > 0 for n in tokens) and tokens[1] < tokens[0]
    assert "prompt tokens over the scenario: default" in result.stdout


def test_compare_in_process_uses_the_configured_server(tmp_path: Path) -> None:
    result = cli("compare", "raven1-sarcasm", "--prompts", "minimal,default")
    assert result.returncode == 0, result.stderr
    assert "minimal      (" in result.stdout and "default      (" in result.stdout
    assert "voice: The user sounded sarcastic and flat" in result.stdout


def test_compare_unknown_template_is_status_2() -> None:
    result = cli("compare", "raven-cooking", "--prompts", "default,nope")
    assert result.returncode == 2 and "unknown prompt template 'nope'" in result.stderr


def test_tool_calls_get_the_scripted_result_and_a_follow_up() -> None:
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "arguments": '{"location": "San Francisco, CA"}',
        },
    }
    tool_reply = Reply(
        steps=[
            ("data", chunk({"role": "assistant", "tool_calls": [call]})),
            ("data", chunk({}, "tool_calls")),
        ]
    )
    text = Reply(
        steps=[
            ("data", chunk({"role": "assistant", "content": "Foggy, 18C."})),
            ("data", chunk({}, "stop")),
        ]
    )
    with FakeUpstream().serving() as fake:
        fake.script = [tool_reply, text, text]
        result = cli("simulate", "--url", fake.base_url, "--scenario", "weather-tools")
        follow_up = fake.wait_for_requests(2)
    assert "[tool call: get_current_weather]" in result.stdout and "Foggy, 18C." in result.stdout
    messages = follow_up.body["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == "call_1"
    assert messages[-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"temperature_c": 18, "sky": "foggy"}',
    }
    assert follow_up.body["tools"][0]["function"]["name"] == "get_current_weather"
    assert follow_up.body["temperature"] == 0.3


@pytest.mark.parametrize(
    ("scenario", "layout"), [("raven1-sarcasm", "user"), ("raven1-user-role", "system")]
)
def test_layout_option_moves_perception_between_roles(scenario: str, layout: str) -> None:
    """`simulate --layout` (issue 22) overrides where the scenario's perception goes."""
    with FakeUpstream().serving() as fake:
        cli("simulate", "--url", fake.base_url, "--scenario", scenario, "--layout", layout)
        fake.wait_for_requests(1)
        bodies = [request.body for request in fake.received]
    messages = [  # the probes' deliberately bad bodies aside
        m for body in bodies for m in body["messages"] if isinstance(m.get("content"), str)
    ]
    perception = [m for m in messages if m["content"].lstrip().startswith("<")]
    assert perception, "the scenario sent no perception"
    roles = {m["role"] for m in perception if "user_emotions" in m["content"]}
    assert roles == ({"user"} if layout == "user" else {"system"})
    audio_alone = [m for m in messages if m["content"].endswith("</user_audio_analysis>")]
    assert bool(audio_alone) == (layout == "user")


def test_phoenix4_tags_follow_user_role_perception(server_url: str) -> None:
    """Issue 22: with the perception sent as user-role messages, the emotion-tag guarantee still
    reads the user's perceived emotions (sad → a sad tag, not the neutral default)."""
    result = cli(
        "simulate", "--url", server_url, "--api-key", "sim-key",
        "--scenario", "phoenix4-emotions", "--layout", "user", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    tags = [re.match(r'<emotion value="([a-z]+)"/>', t["reply"]) for t in report["turns"]]
    assert all(tags), report["turns"]
    assert tags[1] is not None and tags[1].group(1) == "sad"
