"""The capture writer stores or counts every call (issue 23, findings 8 and 9, and the LOW
items on capture): bad rows, sizes in bytes, a total size cap, shutdown, the file's mode, and
deleting a person's calls. Real SQLite and PostgreSQL, real server, real client."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from server.capture.store import CaptureStore
from server.capture.writer import CallCapture
from server.cli import main
from server.inprocess import live_server
from server.metrics import Metrics
from server.redaction import Redactor
from server.services import services
from tests.conftest import make_settings
from tests.test_capture import MESSAGES, ask, store_url, written

__all__ = ["store_url"]  # the fixture, shared with test_capture


def post(base: str, headers: dict[str, str], content: str = "hi", model: str = "echo") -> None:
    answer = httpx.post(
        base + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}]},
        headers=headers,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def calls_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`perception-llm calls ARGS --db URL` in a process of its own, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "calls", *args, "--db", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_one_bad_row_does_not_lose_the_batch(store_url: str) -> None:
    # A 100-character x-request-id (column: 64), a 300-character conversation id or model, or
    # a NUL in the user's text lost the whole PostgreSQL batch.
    with live_server(make_settings(capture=store_url)) as server:
        for index in range(5):
            post(server.url, {"conversation-id": f"ok-{index}"})
        post(server.url, {"x-request-id": "r" * 100, "conversation-id": "long-id"})
        post(server.url, {"conversation-id": "c" * 300})
        post(server.url, {"conversation-id": "nul"}, content="before\x00after")
        rows = written(server, 8)
        capture = services(server.app).capture
        assert capture is not None and capture.dropped == 0
    assert len(rows) == 8
    assert {len(row["conversation_id"]) for row in rows} >= {256}
    assert any(row["user_text"] == "before\ufffdafter" for row in rows)


def test_sizes_are_bytes_and_the_total_is_capped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    emoji = "\U0001f600" * 300_000  # 300,000 characters, 1.2 MB of UTF-8
    settings = make_settings(capture=url, capture_max_megabytes=2, max_message_chars=400_000)
    with live_server(settings) as server:
        post(server.url, {"conversation-id": "emoji"}, content=emoji)
        (row,) = written(server, 1)
        assert "too large to keep" in json.dumps(row["request"])  # over 1 MB in bytes
        for index in range(12):
            post(server.url, {"conversation-id": f"big-{index}"}, content="x" * 300_000)
        capture = services(server.app).capture
        assert capture is not None
        deadline = time.monotonic() + 10
        while capture.written < 13:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        capture.store.prune(86400, 100_000, 2_000_000)
        kept = capture.store.conversations()
        total = sum(
            capture.store.call(call["id"])["stored_bytes"]  # type: ignore[index]
            for conversation in kept
            for call in capture.store.calls_of(conversation["conversation_id"])
        )
    assert total <= 2_000_000 and len(kept) < 13
    assert "big-11" in {conversation["conversation_id"] for conversation in kept}  # newest kept


def test_the_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    CaptureStore(f"sqlite:///{path}").upgrade()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_calls_still_queued_at_shutdown_are_counted_and_logged(
    tmp_path: Path, caplog: object
) -> None:
    import logging

    assert hasattr(caplog, "set_level")
    caplog.set_level(logging.WARNING, logger="server.capture.writer")  # type: ignore[attr-defined]
    store = CaptureStore(f"sqlite:///{tmp_path}/calls.db")
    capture = CallCapture(
        store,
        Metrics(active_streams=lambda: 0, replica="test"),
        Redactor([]),
        perception="full",
        queue_size=10,
        max_age_seconds=86400,
        max_calls=100,
    )
    for _ in range(5):  # queued while no writer runs: nothing can write them
        capture.submit(object())  # type: ignore[arg-type]
    capture._thread = __import__("threading").Thread(target=time.sleep, args=(2,))
    capture._thread.start()
    capture.stop(timeout=0.2)
    assert capture.dropped == 5
    assert "5 calls were still queued" in caplog.text  # type: ignore[attr-defined]


def test_calls_delete_forgets_a_conversation_and_old_calls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    with live_server(make_settings(capture=url)) as server:
        ask(server.url, MESSAGES, "forget-me")
        ask(server.url, MESSAGES, "forget-me")
        ask(server.url, MESSAGES, "keep-me")
        written(server, 3)

    deleted = calls_cli(url, "delete", "forget-me")
    assert deleted.returncode == 0 and deleted.stdout.strip() == (
        "deleted 2 calls of conversation forget-me"
    )
    again = calls_cli(url, "delete", "forget-me")
    assert again.returncode == 2 and "no captured calls" in again.stderr
    store = CaptureStore(url)
    assert [c["conversation_id"] for c in store.conversations()] == ["keep-me"]
    # A negative age (a cut-off in the future) deleted every call; NaN deleted none, silently.
    for days in ("-1", "nan", "inf"):
        refused = calls_cli(url, "delete", "--older-than", days)
        assert refused.returncode == 2 and "--older-than takes days" in refused.stderr, days
    assert [c["conversation_id"] for c in store.conversations()] == ["keep-me"]
    old = calls_cli(url, "delete", "--older-than", "0")
    assert old.returncode == 0 and old.stdout.strip() == "deleted 1 calls older than 0 days"
    assert store.conversations() == []


def test_calls_api_answers_out_of_range_ids_and_an_unreadable_store(tmp_path: Path) -> None:
    # Issue 23 (LOW): /v1/calls/9223372036854775808 was a 500, and so was a database that
    # cannot be read; now 404, and 503 like any unavailable store.
    path = tmp_path / "calls.db"
    url = f"sqlite:///{path}"
    with live_server(make_settings(capture=url)) as server:
        post(server.url, {"conversation-id": "c"})
        written(server, 1)
        for call_id in ("9223372036854775808", "0", "-1"):
            assert httpx.get(f"{server.url}/v1/calls/{call_id}", timeout=10).status_code == 404
        path.write_bytes(b"not a database " * 1024)  # what the store reads is now garbage
        answer = httpx.get(server.url + "/v1/calls", timeout=10)
        assert answer.status_code == 503, answer.text
        assert httpx.get(server.url + "/v1/calls/1", timeout=10).status_code == 503


def test_calls_commands_that_the_database_fails_are_one_line(tmp_path: Path) -> None:
    # Issue 31: a read the database refused (here: its table of calls is gone; on PostgreSQL,
    # `--limit -1`) was a CaptureStoreError traceback; `--limit -1` listed everything on SQLite.
    path = tmp_path / "calls.db"
    url = f"sqlite:///{path}"
    store = CaptureStore(url)
    store.upgrade()
    store.dispose()

    for limit in ("0", "-1"):
        refused = calls_cli(url, "list", "--limit", limit)
        assert refused.returncode == 2
        assert refused.stderr == f"perception-llm: error: --limit must be at least 1, got {limit}\n"
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE captured_calls")
    for action in (["list"], ["list", "some-conversation"], ["show", "1"]):
        failed = calls_cli(url, *action)
        assert failed.returncode == 2, failed.stderr
        assert failed.stderr.startswith("perception-llm: error: cannot read capture database")
        assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    for action in (["delete", "c"], ["delete", "--older-than", "1"], ["stats"]):
        failed = calls_cli(url, *action)
        assert failed.returncode == 2, failed.stderr
        assert failed.stderr == f"perception-llm: error: capture database {url}: OperationalError\n"


def test_calls_delete_refuses_a_negative_or_non_finite_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Review of issue 23: `--older-than=-7` (a typo) deleted every call, even ones made a moment
    # ago (older than a week from now); `nan` and `inf` silently deleted nothing.
    url = f"sqlite:///{tmp_path}/calls.db"
    with live_server(make_settings(capture=url)) as server:
        ask(server.url, MESSAGES, "keep-me")
        written(server, 1)
    for days in ("-7", "nan", "inf", "-inf"):
        assert main(["calls", "delete", f"--older-than={days}", "--db", url]) == 2, days
        assert "--older-than takes" in capsys.readouterr().err
    assert [c["conversation_id"] for c in CaptureStore(url).conversations()] == ["keep-me"]
