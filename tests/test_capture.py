"""Capturing real calls (issue 17): what is stored, what never is, and that it never risks a reply.

Everything runs against a real store: a SQLite file, and a real PostgreSQL server (`.ci/run`
installs and starts Debian's `postgresql` and sets PERCEPTION_TEST_POSTGRES; in CI these
tests fail rather than skip without it). Calls go through the real server, over loopback, with
the official `openai` SDK as Tavus' client.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import create_engine, text

from server.capture.schema import SCHEMA_VERSION
from server.capture.store import CaptureStore, engine_url
from server.inprocess import LiveServer, live_server
from server.services import services
from tests.conftest import FIXTURES, make_settings
from tests.fake_upstream import FakeUpstream, Reply, chunk, text_reply
from tests.user_layout import to_user_role

LAYOUT = json.loads((FIXTURES / "perception" / "tavus-logged-layout.json").read_text())
MESSAGES = LAYOUT["messages"]
SCREEN = "A cockpit diagram with the airspeed indicator circled."


def postgres_url() -> str:
    url = os.environ.get("PERCEPTION_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("PERCEPTION_TEST_POSTGRES is not set: .ci/run must start PostgreSQL")
        pytest.skip("no PostgreSQL here (set PERCEPTION_TEST_POSTGRES); CI runs this")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/calls.db"
        return
    url = postgres_url()
    engine = create_engine(engine_url(url))
    with engine.begin() as connection:  # a clean store for each test
        connection.execute(text("DROP TABLE IF EXISTS captured_calls, capture_schema"))
    engine.dispose()
    yield url


def ask(base: str, messages: list[dict[str, Any]], conversation: str, **kwargs: Any) -> str:
    client = openai.OpenAI(base_url=base + "/v1", api_key=kwargs.pop("key", "k"), max_retries=0)
    stream = client.chat.completions.create(
        model=kwargs.pop("model", "echo"),
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        extra_headers={"conversation-id": conversation},
        **kwargs,
    )
    return "".join(part.choices[0].delta.content or "" for part in stream if part.choices)


def written(server: LiveServer, count: int) -> list[dict[str, Any]]:
    """The captured calls once `count` are written (the writer thread batches; poll its count)."""
    capture = services(server.app).capture
    assert capture is not None
    deadline = time.monotonic() + 10
    while capture.written + capture.dropped < count:
        assert time.monotonic() < deadline, f"{capture.written} of {count} calls written"
        time.sleep(0.01)
    rows = []
    for conversation in capture.store.conversations():
        for summary in capture.store.calls_of(conversation["conversation_id"]):
            row = capture.store.call(summary["id"])
            assert row is not None
            rows.append(
                {
                    **row,
                    **{
                        k: json.loads(row[k])
                        for k in ("headers", "request", "parsed", "prompt", "reply")
                    },
                }
            )
    return sorted(rows, key=lambda row: row["id"])


def test_a_call_is_recorded_whole(store_url: str) -> None:
    with live_server(make_settings(capture=store_url, replica="replica-a")) as server:
        reply = ask(server.url, MESSAGES, "conv-a")
        (row,) = written(server, 1)
    assert row["conversation_id"] == "conv-a" and row["outcome"] == "completed"
    assert row["template"] == "default" and row["mode"] == "raven" and row["stream"] is True
    assert row["ttft_ms"] is not None and row["total_ms"] >= row["ttft_ms"]
    assert row["reply"]["text"] == reply and row["reply"]["finish_reason"] == "stop"
    assert row["request"]["messages"] == MESSAGES  # the body as received
    assert row["parsed"]["latest"]["screenshare"] == SCREEN
    kinds = [part["kind"] for part in row["parsed"]["instructions"]]
    assert kinds[0] == "tavus_perception_preamble"
    assert row["parsed"]["emotion_rule"]["examples"] == ["content"]
    assert row["prompt"]["messages"][-1]["role"] == "user" and row["prompt"]["prompt_tokens"] > 0
    assert row["headers"]["conversation-id"] == "conv-a" and "authorization" not in row["headers"]
    assert row["user_text"] == "What does the white arc mean?"
    assert json.loads(row["perceived"])["emotions"] == "Confused, frowning."
    assert row["replica"] == "replica-a"  # which replica served it (issue 26)


def test_unknown_tags_issues_tool_calls_and_failures_are_recorded(tmp_path: Path) -> None:
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    with FakeUpstream().serving() as fake:
        fake.script = [
            Reply(
                steps=[
                    ("data", chunk({"role": "assistant", "tool_calls": [call]})),
                    ("data", chunk({}, "tool_calls")),
                ]
            ),
            Reply(status=500, error={"message": "upstream exploded"}),
        ]
        settings = make_settings(
            capture=f"sqlite:///{tmp_path}/c.db", upstream_base_url=fake.base_url, fallback_text=""
        )
        with live_server(settings) as server:
            odd = [
                {
                    "role": "system",
                    "content": "<user_gaze>At the camera.</user_gaze> <user_emotions>Calm",
                },
                {"role": "user", "content": "hi"},
            ]
            ask(server.url, odd, "conv-b", model="m")
            with pytest.raises(openai.APIStatusError):
                ask(server.url, odd, "conv-b", model="m")
            tool_row, failed_row = written(server, 2)
    assert tool_row["unknown_tags"] == "user_gaze" and tool_row["issues"] >= 1
    assert tool_row["reply"]["tool_calls"][0]["function"]["name"] == "f"
    assert tool_row["reply"]["finish_reason"] == "tool_calls"
    assert failed_row["outcome"] == "failed" and "exploded" in (failed_row["error"] or "")


def test_nothing_secret_is_ever_stored(tmp_path: Path) -> None:
    secrets = {
        "server key": "sk-perc-SERVERKEY-7f3a9",
        "upstream key": "up-SECRETKEY-91c2e",
        "header": "hdr-SECRET-55aa1",
    }
    database = tmp_path / "calls.db"
    with FakeUpstream().serving() as fake:
        fake.script = [
            text_reply("fine"),
            Reply(status=401, error={"message": f"bad key {secrets['upstream key']}"}),
        ]
        settings = make_settings(
            capture=f"sqlite:///{database}",
            api_key=secrets["server key"],
            upstream_base_url=fake.base_url,
            upstream_api_key=secrets["upstream key"],
            upstream_headers={"api-key": secrets["header"]},
            fallback_text="",
        )
        with live_server(settings) as server:
            said = [
                *MESSAGES[:-1],
                {"role": "user", "content": f"my key is {secrets['server key']}"},
            ]
            ask(server.url, said, "conv-s", key=secrets["server key"], model="m")
            with pytest.raises(openai.APIStatusError):
                ask(server.url, said, "conv-s", key=secrets["server key"], model="m")
            assert len(written(server, 2)) == 2
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir())  # the file, WAL, journal
    with sqlite3.connect(database) as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        dumped = "\n".join(
            str(row) for table in tables for row in connection.execute(f"SELECT * FROM {table}")
        )
    for name, secret in secrets.items():
        assert secret.encode() not in raw, name
        assert secret not in dumped, name
    assert "[redacted]" in dumped.lower()  # the user's text held the key: it was redacted, not lost


@pytest.mark.parametrize(
    ("mode", "kept", "withheld"),
    [
        ("shapes", [], [SCREEN, "Confused, frowning.", "An adult with glasses"]),
        ("no_screen", ["Confused, frowning."], [SCREEN]),
        ("full", [SCREEN, "Confused, frowning."], []),
    ],
)
@pytest.mark.parametrize("layout", ["system", "user"])
def test_privacy_modes(
    tmp_path: Path, mode: str, kept: list[str], withheld: list[str], layout: str
) -> None:
    """Perception sent as user-role messages (issue 22) is reduced like any other."""
    settings = make_settings(capture=f"sqlite:///{tmp_path}/p.db", capture_perception=mode)
    messages = MESSAGES if layout == "system" else to_user_role(MESSAGES)
    with live_server(settings) as server:
        ask(server.url, messages, "conv-p")
        (row,) = written(server, 1)
    stored = json.dumps([row["request"], row["parsed"], row["prompt"]], ensure_ascii=False)
    for value in kept:
        assert value in stored
    for value in withheld:
        assert value not in stored, value
    if mode == "shapes":
        assert row["parsed"]["latest"]["screenshare"] == f"[withheld: {len(SCREEN)} characters]"


def test_a_database_that_is_down_never_fails_a_reply() -> None:
    closed = "postgresql://nobody:nothing@127.0.0.1:9/none?connect_timeout=1"
    with live_server(make_settings(capture=closed)) as server:
        replies = [ask(server.url, MESSAGES, f"conv-{i}") for i in range(5)]
        capture = services(server.app).capture
        assert capture is not None
        deadline = time.monotonic() + 15
        while capture.dropped < 5:
            assert time.monotonic() < deadline, "the failed writes were never counted"
            time.sleep(0.02)
        metrics = httpx.get(server.url + "/metrics").text
    assert all(reply.startswith("<emotion value=") for reply in replies)  # answered, tagged
    assert 'perception_llm_capture_dropped_total{reason="store_error"} 5.0' in metrics
    assert capture.written == 0


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    settings = make_settings(capture=f"sqlite:///{tmp_path}/q.db", capture_queue_size=1)
    with live_server(settings) as server:
        capture = services(server.app).capture
        assert capture is not None
        capture.stop()  # no writer: the queue fills at once
        for index in range(3):
            ask(server.url, MESSAGES, f"conv-q{index}")
        metrics = httpx.get(server.url + "/metrics").text
    assert 'perception_llm_capture_dropped_total{reason="queue_full"} 2.0' in metrics


def test_retention_by_age_and_count(store_url: str) -> None:
    store = CaptureStore(store_url)
    store.upgrade()
    now = time.time()
    base = {
        "request_id": "r", "conversation_id": "c", "template": "default", "model": "m",
        "stream": True, "mode": "raven", "outcome": "completed", "ttft_ms": 1.0, "total_ms": 2.0,
        "prompt_tokens": 10, "shared": False, "error": None, "issues": 0, "unknown_tags": "",
        "user_text": "", "perceived": "{}", "headers": "{}", "request": "{}", "parsed": "{}", "prompt": "{}", "reply": "{}",
    }  # fmt: skip
    store.write(
        [{**base, "started_at": now - 30 * 86400}] + [{**base, "started_at": now} for _ in range(4)]
    )
    assert store.prune(max_age_seconds=7 * 86400, max_calls=2) == 3
    assert len(store.calls_of("c")) == 2
    store.dispose()


def test_a_version_1_store_gains_the_replica_column_and_keeps_its_calls(store_url: str) -> None:
    """Schema v2 (issue 26): a store written by the previous release is upgraded in place (to
    the newest version, v3 since issue 25's experiment tables)."""
    from sqlalchemy import MetaData, Table, insert

    from server.capture.schema import calls, schema

    old = MetaData()
    added_later = {"replica", "tool", "emotion_repaired", "stored_bytes"}
    v1_calls = Table(calls.name, old, *[c._copy() for c in calls.c if c.name not in added_later])
    v1_schema = Table(schema.name, old, *[c._copy() for c in schema.c])
    engine = create_engine(engine_url(store_url))
    row = {c.name: 0 for c in v1_calls.c if c.name != "id"}
    row.update(request_id="r1", conversation_id="c1", template="t", model="m", mode="raven")
    row.update(outcome="completed", unknown_tags="", user_text="hi", perceived="{}")
    row.update(headers="{}", request="{}", parsed="{}", prompt="{}", reply="{}", error=None)
    with engine.begin() as connection:
        old.create_all(connection)
        connection.execute(insert(v1_schema).values(version=1))
        connection.execute(insert(v1_calls).values(**row))
    engine.dispose()
    store = CaptureStore(store_url)
    assert store.upgrade() == SCHEMA_VERSION
    (kept,) = store.calls_of("c1")
    assert kept["request_id"] == "r1" and kept["replica"] is None
    store.write([{**row, "conversation_id": "c1", "request_id": "r2", "replica": "pod-1"}])
    assert [c["replica"] for c in store.calls_of("c1")] == [None, "pod-1"]
    assert store.conversations()[0]["replicas"] == 1  # calls from before replicas had names
    assert store.upgrade() == SCHEMA_VERSION  # and again: nothing to do
    store.dispose()


def test_replicas_starting_together_create_the_schema_once() -> None:
    """Regression (issue 26): replicas starting at once against a fresh PostgreSQL raced to
    create the tables (`duplicate key value violates unique constraint`), and the losers dropped
    their first calls. An advisory lock lets one migrate while the others wait."""
    import threading

    url = postgres_url()
    engine = create_engine(engine_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS captured_calls, capture_schema"))
    engine.dispose()
    stores = [CaptureStore(url) for _ in range(4)]
    together = threading.Barrier(len(stores))
    outcomes: list[object] = []

    def upgrade(store: CaptureStore) -> None:
        together.wait()
        try:
            outcomes.append(store.upgrade())
        except Exception as error:
            outcomes.append(error)

    threads = [threading.Thread(target=upgrade, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.dispose()
    assert outcomes == [SCHEMA_VERSION] * 4


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/v.db"
    CaptureStore(url).upgrade()
    with sqlite3.connect(tmp_path / "v.db") as connection:
        connection.execute("INSERT INTO capture_schema (version) VALUES (99)")
    from server.capture.store import CaptureStoreError

    with pytest.raises(CaptureStoreError, match="schema version 99"):
        CaptureStore(url).upgrade()


def test_calls_api_and_its_absence(tmp_path: Path) -> None:
    with live_server(make_settings()) as server:
        listing = httpx.get(server.url + "/v1/calls").json()
        assert listing == {"object": "list", "capturing": False, "data": []}
        response = httpx.get(server.url + "/v1/calls/1")
        assert response.status_code == 404
        assert "PERCEPTION_LLM_CAPTURE" in response.json()["error"]["message"]
    with live_server(make_settings(capture=f"sqlite:///{tmp_path}/a.db")) as server:
        conversation = f"conv-{uuid.uuid4().hex[:6]}"
        ask(server.url, MESSAGES, conversation)
        written(server, 1)
        (summary,) = httpx.get(server.url + "/v1/calls").json()["data"]
        assert summary["conversation_id"] == conversation and summary["calls"] == 1
        (call,) = httpx.get(server.url + "/v1/calls", params={"conversation": conversation}).json()[
            "data"
        ]
        full = httpx.get(server.url + f"/v1/calls/{call['id']}").json()
        assert full["parsed"]["latest"]["screenshare"] == SCREEN
        assert httpx.get(server.url + "/v1/calls/999999").status_code == 404


def test_a_huge_body_is_not_kept_whole(tmp_path: Path) -> None:
    """An attacker repeating 4 MB bodies must not fill the disk: a column over 1 MB is a note."""
    persona = [{"role": "system", "content": "x" * 150_000} for _ in range(8)]  # 1.2 MB in all
    huge = [*persona, {"role": "user", "content": "hi"}]
    with live_server(make_settings(capture=f"sqlite:///{tmp_path}/h.db")) as server:
        ask(server.url, huge, "conv-h")
        (row,) = written(server, 1)
    assert row["request"] == {"withheld": row["request"]["withheld"]}
    assert "too large to keep" in row["request"]["withheld"]
    assert row["outcome"] == "completed" and (tmp_path / "h.db").stat().st_size < 2_000_000
