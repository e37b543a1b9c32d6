"""The playground's Experiments section and its API (issue 25): past `eval` runs, the matrix, and
a cell's replies with their verdicts and the exact prompt — in Chromium, over a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, expect

from server.app import create_app
from server.cli import main
from server.inprocess import running_server
from tests.conftest import ROOT, make_settings
from tests.test_playground import browser, open_page  # noqa: F401  (the module's fixture)


def test_experiments_api_reads_the_capture_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    assert main(["eval", "perception-basics", "--db", url]) == 1
    capsys.readouterr()
    with TestClient(create_app(make_settings(capture=url))) as client:
        runs = client.get("/v1/experiments").json()
        assert runs["stored"] is True and [r["suite"] for r in runs["data"]] == [
            "perception-basics"
        ]
        run_id = runs["data"][0]["id"]
        run = client.get(f"/v1/experiments/{run_id}").json()
        assert run["status"] == "failed" and len(run["summary"]["rows"]) == 18
        replies = client.get(
            f"/v1/experiments/{run_id}/replies",
            params={"test": "canary-on-screen", "template": "default", "model": "echo"},
        ).json()["data"]
        assert len(replies) == 1
        verdicts = {a["type"]: a for a in replies[0]["assertions"]}
        assert verdicts["resists-injection"]["passed"] is False
        assert "PAPAYA-7" in replies[0]["reply"]
        assert any("\u27e6perception" in str(m["content"]) for m in replies[0]["prompt"])
        assert client.get("/v1/experiments/999").status_code == 404
        # issue 31: a run that does not exist had replies: an empty list, 200
        assert client.get("/v1/experiments/999/replies").status_code == 404


def test_experiments_api_without_any_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no perception-llm-evals.db here
    with TestClient(create_app(make_settings())) as client:
        assert client.get("/v1/experiments").json() == {
            "object": "list",
            "stored": False,
            "data": [],
        }


def test_experiments_section_shows_runs_matrix_and_replies(
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    # A process of its own: Playwright's sync API holds an event loop in this thread.
    command = [sys.executable, "-m", "server.cli", "eval", "perception-basics", "--db", url]
    assert subprocess.run(command, cwd=ROOT, capture_output=True, timeout=120).returncode == 1
    with running_server(make_settings(capture=url)) as base:
        page, errors = open_page(browser, base)
        expect(page.get_by_test_id("experiment-runs")).to_contain_text("perception-basics")
        summary = page.get_by_test_id("experiment-summary")
        expect(summary).to_contain_text("default 8/9 (under the threshold)")
        matrix = page.get_by_test_id("experiment-matrix")
        failing = matrix.locator("tr[data-test='canary-on-screen'][data-template='default']")
        expect(failing.filter(has_text="resists-injection")).to_contain_text("0/1")
        failing.filter(has_text="resists-injection").click()
        replies = page.get_by_test_id("experiment-replies")
        expect(replies).to_contain_text("resists-injection: failed — the reply repeats the canary")
        expect(replies).to_contain_text("Messages the model got")
        replies.locator("summary").first.click()
        expect(replies.locator("ol.messages")).to_contain_text("PAPAYA-7")  # shown as text
        assert errors == []


def test_experiments_api_answers_out_of_range_run_ids(tmp_path: Path) -> None:
    # Review of issue 23: /v1/experiments/9223372036854775808 was a 500 (the database's integer
    # overflowed), as /v1/calls/… was before; now 404 like any unknown run, and its replies too.
    url = f"sqlite:///{tmp_path}/calls.db"
    with TestClient(create_app(make_settings(capture=url))) as client:
        for run_id in ("9223372036854775808", "99999999999999999999999", "0", "-1"):
            assert client.get(f"/v1/experiments/{run_id}").status_code == 404
            assert client.get(f"/v1/experiments/{run_id}/replies").status_code == 404
