"""One redactor, owned by `Services`, knows every secret, including ones registered after start-up
(issue 24): the capture, the upstream's failures, the replies and the logs all use it."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import openai
import pytest

from server.redaction import REDACTED, Redactor
from server.services import services
from tests.conftest import make_settings
from tests.fake_upstream import FakeUpstream, Reply, text_reply
from tests.live import live_server

LATE = "late-SECRET-learnt-at-run-time-5e1d"  # long enough to be taken out of replies too
CONFIGURED = "sk-configured-SECRET-93ab7"


def test_a_secret_added_later_is_redacted_by_the_redactor_and_its_reply_view() -> None:
    redactor = Redactor([CONFIGURED, "true"])
    replies = redactor.for_replies()
    redactor.add(LATE, "delta")
    assert redactor.redact(f"{CONFIGURED} {LATE} true delta") == " ".join([REDACTED] * 4)
    # The reply view: the same secrets, but a short one never blanks a spoken word.
    assert replies.redact(f"{CONFIGURED} {LATE} true delta") == f"{REDACTED} {REDACTED} true delta"
    assert redactor.cut("x" * 10 + LATE, 12) == "x" * 10 + REDACTED[:2]


def test_the_app_has_one_redactor_with_every_configured_secret() -> None:
    settings = make_settings(
        api_key="server-key-0123456789abcdef",
        api_key_previous="previous-key-0123456789abcdef",
        upstream_base_url="http://127.0.0.1:9/v1",
        upstream_api_key="upstream-key-0123456789",
        upstream_headers={"api-key": "header-key-0123456789"},
    )
    with live_server(settings) as server:
        app_services = services(server.app)
        text = " ".join(settings.secrets())
        assert app_services.redactor.redact(text) == " ".join([REDACTED] * 4)


def test_a_secret_registered_after_start_up_is_redacted_everywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    database = tmp_path / "calls.db"
    with FakeUpstream().serving() as fake:
        fake.script = [
            text_reply(f"your key is {LATE}."),  # a reply that echoes it
            Reply(status=401, error={"message": f"bad key {LATE}"}),  # a failure that does
        ]
        settings = make_settings(
            capture=f"sqlite:///{database}", upstream_base_url=fake.base_url, fallback_text=""
        )
        with live_server(settings) as server:
            app_services = services(server.app)
            app_services.redactor.add(LATE)  # learnt after start-up
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0)
            said = [{"role": "user", "content": f"my key is {LATE}"}]
            reply = client.chat.completions.create(model="m", messages=said)  # type: ignore[arg-type]
            with pytest.raises(openai.APIStatusError) as failure:
                client.chat.completions.create(model="m", messages=said)  # type: ignore[arg-type]
            logging.getLogger("server").warning("a log line that names %s", LATE)
            capture = app_services.capture
            assert capture is not None
            deadline = time.monotonic() + 20  # the writer thread batches: poll its count
            while capture.written < 2:
                assert time.monotonic() < deadline, f"{capture.written} of 2 calls written"
                time.sleep(0.01)
    assert reply.choices[0].message.content == f"your key is {REDACTED}."
    assert LATE not in str(failure.value.body) and REDACTED in str(failure.value.body)
    assert LATE not in caplog.text and f"names {REDACTED}" in caplog.text
    with sqlite3.connect(database) as connection:
        rows = [json.dumps(row) for row in connection.execute("SELECT * FROM captured_calls")]
    assert len(rows) == 2
    assert all(LATE not in row for row in rows) and REDACTED in rows[0]
