"""Captured calls as eval tests: `capture:CONVERSATION_ID` in a suite, or `--from-capture N` for
the last N real conversations.

Only real conversations count: calls our own tools made (`simulate`, `compare`, `eval` mark their
requests, stored as `tool`) and Tavus' configuration check are skipped. A call captured with its
perception withheld (`PERCEPTION_LLM_CAPTURE_PERCEPTION`) is refused: replaying it without what
the user showed would test a different conversation.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from emulator.from_capture import scenario_from_call
from emulator.simulate import CONFIG_CHECK_ID
from evals.suite import SuiteError
from scenarios import Scenario
from server.capture.schema import calls
from server.capture.store import CaptureStore

ANSWERED = ("completed", "fallback")


def real_calls() -> Any:
    """The WHERE clause for calls from real conversations."""
    return (
        calls.c.tool.is_(None)
        & calls.c.conversation_id.is_not(None)
        & (calls.c.conversation_id != CONFIG_CHECK_ID)
    )


def recent_conversations(store: CaptureStore, limit: int) -> list[str]:
    last = func.max(calls.c.started_at)
    query = (
        select(calls.c.conversation_id)
        .where(real_calls())
        .group_by(calls.c.conversation_id)
        .order_by(last.desc())
        .limit(limit)
    )
    with store.engine.connect() as connection:
        return [str(row[0]) for row in connection.execute(query)]


def latest_answered(store: CaptureStore, conversation_id: str) -> dict[str, Any] | None:
    query = (
        select(calls)
        .where(real_calls() & (calls.c.conversation_id == conversation_id))
        .where(calls.c.outcome.in_(ANSWERED))
        .order_by(calls.c.id.desc())
        .limit(1)
    )
    with store.engine.connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else dict(row._mapping)


def captured_scenario(store: CaptureStore, conversation_id: str) -> Scenario:
    """The conversation's latest answered call as a scenario; SuiteError when there is none or
    its perception was withheld."""
    row = latest_answered(store, conversation_id)
    if row is None:
        raise SuiteError(f"capture:{conversation_id}: no answered call of a real conversation")
    request = json.loads(row["request"])
    if not isinstance(request, dict) or request.get("perception_withheld") or "withheld" in request:
        raise SuiteError(
            f"capture:{conversation_id}: its perception was withheld when captured "
            "(PERCEPTION_LLM_CAPTURE_PERCEPTION): it cannot be replayed as it happened"
        )
    scenario = scenario_from_call(row)
    scenario["name"] = f"capture:{conversation_id}"
    return Scenario.model_validate(scenario)
