"""`perception-llm eval` end to end (issue 25): the shipped example in process with `echo`, the
cache on a rerun, reports, a judge on loopback (a real HTTP server that answers like OpenAI),
outages as errored cells (exit 2), bad suites (one line, exit 2), and captured conversations as
tests (our own marked calls and Tavus' configuration check left out)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from server.cli import main
from server.inprocess import live_server
from tests.conftest import make_settings
from tests.fake_upstream import FakeUpstream, Reply
from tests.test_capture import written


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["eval", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/evals.db"


def test_the_shipped_example_fails_one_assertion_on_purpose_then_reruns_from_the_cache(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    status, out, err = run(capsys, "perception-basics", "--db", db, "--json", f"{tmp_path}/r.json")
    assert status == 1, out + err
    assert "3 test(s) x 2 template(s) x 1 model(s) x 1 sample(s) = 6 replies" in out
    assert "default        8/9 passed" in out and "UNDER THRESHOLD" in out
    assert "minimal        9/9 passed" in out
    assert "resists-injection failed: the reply repeats the canary 'PAPAYA-7'" in out
    assert "6 model calls, 0 judge calls, 0 cache hits" in out
    assert "[6/6]" in err  # progress goes to stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "failed" and report["exit_code"] == 1
    rows = {(r["test"], r["template"], r["assertion"]): r for r in report["rows"]}
    assert len(rows) == 18
    failing = rows[("canary-on-screen", "default", "resists-injection")]
    assert (failing["passed"], failing["total"]) == (0, 1)
    assert rows[("canary-on-screen", "minimal", "resists-injection")]["passed"] == 1
    assert all(r["prompt_tokens"] and r["reply_tokens"] for r in report["rows"])

    status, out, _ = run(capsys, "perception-basics", "--db", db)
    assert status == 1
    assert "0 model calls, 0 judge calls, 6 cache hits" in out
    assert "* includes latencies recorded when the reply was cached" in out

    status, out, _ = run(capsys, "perception-basics", "--db", db, "--no-cache")
    assert "6 model calls, 0 judge calls, 0 cache hits" in out

    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        runs = connection.execute("SELECT suite, status FROM eval_runs ORDER BY id").fetchall()
        replies = connection.execute(
            "SELECT cached, prompt FROM eval_replies WHERE run_id = 2"
        ).fetchall()
    assert runs == [("perception-basics", "failed")] * 3
    assert len(replies) == 6 and all(cached for cached, _ in replies)
    assert all("\u27e6perception" in prompt for _, prompt in replies)  # the exact prompt kept


def test_html_report_is_one_escaped_page(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "templates: [minimal]\nmodels: [echo]\ntests: [raven-cooking]\n"
        "defaultTest:\n  assert:\n    - {type: contains, value: '<script>'}\n"
    )
    status, _, _ = run(capsys, str(suite), "--db", db, "--html", f"{tmp_path}/r.html")
    assert status == 1
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!doctype html>") and "<script>" not in page
    assert "&lt;script&gt;" in page and "src=" not in page and "href=" not in page


def judge_answer(content: str) -> Reply:
    return Reply(
        json_body={
            "id": "j",
            "object": "chat.completion",
            "created": 1,
            "model": "judge",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
        }
    )


@pytest.fixture
def judge() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    with fake.serving():
        yield fake


def rubric_suite(tmp_path: Path, judge_url: str, repeat: int = 1) -> str:
    path = tmp_path / "rubric.yaml"
    path.write_text(
        f"templates: [minimal]\nmodels: [echo]\nrepeat: {repeat}\n"
        f"judge: {{url: '{judge_url}', model: grader, api_key_env: EVAL_JUDGE_KEY}}\n"
        "tests:\n  - scenario: raven1-sarcasm\n    assert:\n"
        "      - {type: llm-rubric, value: acknowledges that the user seems tired}\n"
    )
    return str(path)


def test_llm_rubric_asks_the_judge_once_and_caches_its_verdict(
    capsys: pytest.CaptureFixture[str],
    db: str,
    tmp_path: Path,
    judge: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVAL_JUDGE_KEY", "judge-secret")
    judge.script = [judge_answer('{"pass": true, "score": 0.75, "reason": "it does"}')]
    suite = rubric_suite(tmp_path, judge.base_url, repeat=2)
    status, out, _ = run(capsys, suite, "--db", db)
    assert status == 0, out
    assert "0 model calls" not in out and "2 judge calls" in out
    assert "0.75" in out  # the judge score column
    asked = judge.received
    assert len(asked) == 2 and asked[0].headers["authorization"] == "Bearer judge-secret"
    body = asked[0].body
    assert body["model"] == "grader" and body["temperature"] == 0
    prompt = body["messages"][1]["content"]
    assert "acknowledges that the user seems tired" in prompt
    assert "Tired." in prompt  # the perception it judges against, as data

    status, out, _ = run(capsys, suite, "--db", db)
    assert status == 0 and "0 model calls, 0 judge calls, 4 cache hits" in out
    assert len(judge.received) == 2


def test_a_judge_reply_that_is_not_json_fails_with_the_raw_reply_kept(
    capsys: pytest.CaptureFixture[str],
    db: str,
    tmp_path: Path,
    judge: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVAL_JUDGE_KEY", "k")
    judge.script = [judge_answer("Honestly? I'd say it passes.")]
    status, out, err = run(capsys, rubric_suite(tmp_path, judge.base_url), "--db", db)
    assert status == 1, out
    assert 'llm-rubric failed: the judge did not answer {"pass", "score", "reason"} JSON' in out
    assert "judge said: Honestly? I'd say it passes." in out
    assert "Traceback" not in out + err


def test_a_judge_outage_makes_errored_cells_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    db: str,
    tmp_path: Path,
    judge: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVAL_JUDGE_KEY", "k")
    judge.script = [Reply(status=503, error={"error": {"message": "overloaded"}})]
    suite = rubric_suite(tmp_path, judge.base_url)
    status, out, err = run(
        capsys, suite, "--db", db, "--attempts", "2", "--json", f"{tmp_path}/r.json"
    )
    assert status == 2, out
    assert "result: incomplete (exit 2)" in out
    assert "llm-rubric ERRORED: judge failed after 2 tries: judge HTTP 503" in out
    assert len(judge.received) == 2  # retried once, then counted as errored
    row = json.loads((tmp_path / "r.json").read_text())["rows"][0]
    assert (row["passed"], row["failed"], row["errored"], row["total"]) == (0, 0, 1, 0)
    assert "Traceback" not in out + err


def test_a_missing_judge_key_is_one_line(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    status, _, err = run(capsys, rubric_suite(tmp_path, "http://127.0.0.1:9/v1"), "--db", db)
    assert status == 2
    assert err.strip() == "perception-llm: error: judge.api_key_env: EVAL_JUDGE_KEY is not set"


def test_a_model_outage_against_url_is_incomplete_not_failed(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    fake = FakeUpstream()
    fake.script = [Reply(status=429, error={"error": {"message": "slow down"}})]
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "templates: [minimal]\nmodels: [m]\ntests: [raven-cooking]\n"
        "defaultTest: {assert: [{type: icontains, value: x}]}\n"
    )
    with fake.serving():
        status, out, err = run(
            capsys, str(suite), "--db", db, "--url", fake.base_url, "--attempts", "2"
        )
        completions = [r for r in fake.received if r.path.endswith("/chat/completions")]
    assert status == 2, out
    assert "model failed after 2 tries: HTTP 429" in out
    assert len(completions) == 2
    assert all(r.headers["x-perception-llm-tool"] == "eval" for r in completions)
    assert "Traceback" not in err


def test_the_call_cap_is_printed_and_enforced(capsys: pytest.CaptureFixture[str], db: str) -> None:
    status, out, err = run(capsys, "perception-basics", "--db", db, "--max-calls", "5")
    assert status == 2
    assert "at most 6 model and 0 judge calls before retries, cap 5 (--max-calls)" in out
    assert "needs more calls than --max-calls 5" in err


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        (
            "templates: [default, fancy]\ntests: [raven-cooking]\n",
            "templates[1]: unknown prompt template 'fancy'",
        ),
        (
            "templates: [default]\ntests: [nowhere]\n",
            "tests[0]: no scenario file or shipped scenario 'nowhere'",
        ),
        (
            "templates: [default]\ntests:\n  - {scenario: raven-cooking, assert: [{type: nope}]}\n",
            "tests[0].assert[0].type: unknown assertion 'nope'",
        ),
        ("templates: [default\n", "bad YAML at line 2"),
    ],
)
def test_bad_suites_exit_2_in_one_line(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path, suite: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(suite)
    status, _, err = run(capsys, str(path), "--db", db)
    assert status == 2
    assert err.count("\n") == 1 and message in err and str(path) in err


def test_no_suite_and_no_capture_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys)
    assert status == 2 and "give a SUITE file" in err


def ask(url: str, conversation: str, messages: list[dict[str, Any]], **headers: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
    stream = client.chat.completions.create(
        model="echo",
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        extra_headers={"conversation-id": conversation, **headers},
    )
    for _ in stream:
        pass


RAVEN_TURN = [
    {"role": "system", "content": "You are Ada, a friendly tutor."},
    {
        "role": "system",
        "content": "<user_appearance>A man in a green sweater.</user_appearance>"
        " <user_emotions>Frustrated, frowning.</user_emotions>",
    },
    {"role": "user", "content": "This is so confusing."},
]


@pytest.mark.parametrize("privacy", ["full", "shapes"])
def test_from_capture_replays_real_conversations_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, privacy: str
) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    settings = make_settings(capture=url, capture_perception=privacy)
    with live_server(settings) as server:
        ask(server.url, "real-call-1", RAVEN_TURN)
        ask(server.url, "tavus-openai-compat-test", RAVEN_TURN)  # Tavus' configuration check
        ask(server.url, "sim-1", RAVEN_TURN, **{"X-Perception-LLM-Tool": "simulate"})
        written(server, 3)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        marks = dict(connection.execute("SELECT conversation_id, tool FROM captured_calls"))
    assert marks == {"real-call-1": None, "tavus-openai-compat-test": None, "sim-1": "simulate"}

    status, out, err = run(
        capsys, "--from-capture", "10", "--db", url, "--templates", "minimal", "--models", "echo"
    )
    if privacy == "shapes":
        assert status == 2
        assert "capture:real-call-1: its perception was withheld" in err
        assert "no captured conversation to replay" in err
        return
    assert status == 1, out + err  # echo says what it sees: appearance, unasked
    assert "1 test(s) x 1 template(s)" in out
    assert "capture:real-call-1" in out and "sim-1" not in out and "compat" not in out
    assert "no-unprompted-appearance failed: describes appearance unasked (green, sweat)" in out

    # a suite can name the conversation; the eval's own calls are marked and never replayed
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "templates: [minimal]\nmodels: [echo]\ntests:\n  - scenario: capture:real-call-1\n"
        "    assert: [{type: mentions-perception, value: emotions}]\n"
    )
    status, out, _ = run(capsys, str(suite), "--db", url)
    assert status == 0, out
    status, _, err = run(capsys, str(suite).replace("s.yaml", "t.yaml"), "--db", url)
    assert status == 2 and "cannot read" in err


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_v1_capture_database_is_upgraded_with_the_new_columns_and_experiment_tables(
    tmp_path: Path, backend: str
) -> None:
    """A store written by the previous release (schema v1: no `tool`, no eval tables)."""
    from sqlalchemy import create_engine, inspect, text

    from server.capture.schema import SCHEMA_VERSION, calls
    from server.capture.store import CaptureStore, engine_url
    from tests.test_capture import postgres_url

    url = f"sqlite:///{tmp_path}/old.db" if backend == "sqlite" else postgres_url()
    engine = create_engine(engine_url(url))
    old_columns = ", ".join(
        f"{c.name} {'INTEGER PRIMARY KEY' if c.name == 'id' else 'TEXT'}"
        for c in calls.c
        if c.name not in ("tool", "emotion_repaired", "replica", "stored_bytes")
    )
    with engine.begin() as connection:
        connection.execute(
            text(
                "DROP TABLE IF EXISTS captured_calls, capture_schema, eval_runs, eval_replies, eval_cache"
            )
            if backend == "postgresql"
            else text("SELECT 1")
        )
        connection.execute(text(f"CREATE TABLE captured_calls ({old_columns})"))
        connection.execute(text("CREATE TABLE capture_schema (version INTEGER NOT NULL)"))
        connection.execute(text("INSERT INTO capture_schema VALUES (1)"))
    store = CaptureStore(url)
    assert store.upgrade() == SCHEMA_VERSION
    found = inspect(engine)
    assert {"tool", "emotion_repaired", "replica"} <= {
        c["name"] for c in found.get_columns("captured_calls")
    }
    assert {"eval_runs", "eval_replies", "eval_cache"} <= set(found.get_table_names())
    assert store.upgrade() == SCHEMA_VERSION  # idempotent
    store.dispose()
    with engine.begin() as connection:  # leave PostgreSQL as the capture tests expect it
        connection.execute(text("DROP TABLE captured_calls"))
        connection.execute(text("DROP TABLE capture_schema"))
    engine.dispose()


README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _stable(text: str) -> str:
    """The output without what the README marks volatile: latencies, run number, seconds."""
    import re

    text = re.sub(r"\d+ ms\*? *", "N ms ", text)  # the column pads by the width of the number
    return re.sub(r"took [\d.]+ s: (.*?); run #\d+ kept in .*", r"took: \1", text)


def test_the_readme_shows_the_shipped_suite_and_what_it_prints(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shipped = (
        Path(__file__).resolve().parents[1] / "evals/examples/perception-basics.yaml"
    ).read_text()
    assert f"```yaml\n{shipped}```" in README
    shown = README.split('--no-cache 2>/dev/null; echo "exit $?"\n```')[1]
    shown = shown.split("```text\n", 1)[1].split("\n```", 1)[0]
    status, out, _ = run(
        capsys, "perception-basics", "--no-cache", "--db", f"sqlite:///{tmp_path}/e.db"
    )
    assert _stable(out + f"exit {status}") == _stable(shown)


def test_against_url_unknown_templates_are_refused_and_the_model_is_the_endpoints(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path, live_url: str
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("templates: [minimal, fancy]\ntests: [raven-cooking]\n")
    status, _, err = run(capsys, str(suite), "--db", db, "--url", live_url + "/v1")
    assert status == 2
    assert f"templates[1]: {live_url}/v1 has no template 'fancy' (it has: default," in err
    suite.write_text("templates: [minimal]\ntests: [raven-cooking]\n")
    status, out, _ = run(capsys, str(suite), "--db", db, "--url", live_url + "/v1")
    assert status == 0, out
    assert "model: echo (the endpoint's; set `models` in the suite or --models to choose)" in out
    assert "minimal        no assertions to count" in out


@pytest.mark.parametrize(
    "flags", [["-j", "0"], ["--max-calls", "0"], ["--attempts", "0"], ["--from-capture", "0"]]
)
def test_numbers_below_one_are_refused_not_hung(
    capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    status, _, err = run(capsys, "perception-basics", *flags)
    assert status == 2 and f"{flags[0]} must be at least 1, got 0" in err


def test_the_cache_does_not_hand_back_another_upstreams_reply(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fake_upstream import text_reply

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "templates: [minimal]\nmodels: [up-model]\ntests: [raven-cooking]\n"
        "defaultTest: {assert: [{type: contains, value: alpha}]}\n"
    )
    monkeypatch.setenv("PERCEPTION_LLM_UPSTREAM_CHECK", "false")
    outcomes = []
    for word in ("alpha", "beta"):
        fake = FakeUpstream()
        fake.script = [text_reply(word)]
        with fake.serving():
            monkeypatch.setenv("PERCEPTION_LLM_UPSTREAM_BASE_URL", fake.base_url)
            status, out, _ = run(capsys, str(suite), "--db", db)
        outcomes.append((status, "1 model calls" in out))
    assert outcomes == [(0, True), (1, True)]  # the second upstream was asked, and said beta


def test_an_upstream_outage_in_process_is_errored_not_the_spoken_fallback(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tavus hears a fallback line when the upstream fails; an experiment must not grade it."""
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "templates: [minimal]\nmodels: [up-model]\ntests: [raven-cooking]\n"
        "defaultTest: {assert: [{type: not-icontains, value: banana}]}\n"
    )
    monkeypatch.setenv("PERCEPTION_LLM_UPSTREAM_CHECK", "false")
    fake = FakeUpstream()
    fake.script = [Reply(status=503, error={"error": {"message": "down"}})]
    with fake.serving():
        monkeypatch.setenv("PERCEPTION_LLM_UPSTREAM_BASE_URL", fake.base_url)
        status, out, err = run(capsys, str(suite), "--db", db, "--attempts", "2")
    assert status == 2, out
    assert "not-icontains ERRORED: no reply: model failed after 2 tries" in out
    assert "train of thought" not in out  # the fallback line was not graded as a reply
    assert "Traceback" not in err


def test_a_model_no_upstream_serves_is_refused_not_answered_by_echo(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    # Issue 31: with no upstream configured the offline responder answered for `gpt-9`, and the
    # matrix credited echo's replies to gpt-9 (exit 0 when they passed).
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "templates: [minimal]\nmodels: [gpt-9]\ntests: [raven-cooking]\n"
        "defaultTest: {assert: [{type: icontains, value: said}]}\n"
    )
    status, out, err = run(capsys, str(suite), "--db", db)
    assert status == 2 and out == ""
    assert err == (
        f"perception-llm: error: {suite}: models: no upstream is configured "
        "(PERCEPTION_LLM_UPSTREAM_BASE_URL), so the offline echo would answer for gpt-9; "
        "configure the upstream, or --url an endpoint that serves it\n"
    )
    assert run(capsys, str(suite), "--db", db, "--models", "echo")[0] == 0


@pytest.mark.parametrize("flag", ["--templates", "--models"])
def test_an_empty_list_of_templates_or_models_is_refused(
    capsys: pytest.CaptureFixture[str], db: str, flag: str
) -> None:
    # Issue 31: `--templates ' ,'` ran no cell and reported "result: passed (exit 0)".
    status, out, err = run(capsys, "perception-basics", "--db", db, flag, " ,")
    assert status == 2 and out == ""
    assert err == f"perception-llm: error: {flag} needs at least one name, got ' ,'\n"
