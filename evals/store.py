"""Experiment runs and the reply cache, kept in the capture database (`PERCEPTION_LLM_CAPTURE`)
when one is set — so the playground shows runs next to the calls they came from — else in a
local SQLite file. The tables are the capture store's (schema v3, server/capture/schema.py)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select

from server.capture.schema import eval_cache, eval_replies, eval_runs
from server.capture.settings import DEFAULT_EXPERIMENTS_URL
from server.capture.store import CaptureStore

if TYPE_CHECKING:  # the runner uses the store; the store only reads what the runner made
    from evals.report import Summary
    from evals.runner import Cell

DEFAULT_URL = DEFAULT_EXPERIMENTS_URL


class ExperimentStore:
    def __init__(self, store: CaptureStore) -> None:
        self.store = store
        self.engine = store.engine

    def cached(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            value = connection.execute(
                select(eval_cache.c.value).where(eval_cache.c.key == key)
            ).scalar()
        return None if value is None else dict(json.loads(value))

    def remember(self, key: str, value: dict[str, Any]) -> None:
        """Keep `value` under `key` (a resample with --no-cache replaces the old one)."""
        with self.engine.begin() as connection:
            connection.execute(delete(eval_cache).where(eval_cache.c.key == key))
            connection.execute(
                insert(eval_cache).values(
                    key=key, created_at=time.time(), value=json.dumps(value, ensure_ascii=False)
                )
            )

    def save_run(
        self,
        run: dict[str, Any],
        replies: list[dict[str, Any]],
    ) -> int:
        """Store a finished run and its replies in one transaction; the run's id."""
        with self.engine.begin() as connection:
            inserted = connection.execute(
                insert(eval_runs).values(
                    started_at=run["started_at"],
                    seconds=run["seconds"],
                    suite=run["suite"][:256],
                    status=run["status"],
                    target=run["target"][:512],
                    summary=json.dumps(run["summary"], ensure_ascii=False),
                )
            ).inserted_primary_key
            run_id = int(inserted[0]) if inserted else 0
            if replies:
                connection.execute(
                    insert(eval_replies), [{**reply, "run_id": run_id} for reply in replies]
                )
        return int(run_id)

    def keep(self, summary: Summary, cells: list[Cell], meta: dict[str, Any]) -> int:
        """Keep a finished run with every reply, its exact prompt and its verdicts."""
        replies = [
            {
                "test": cell.case.name,
                "template": cell.template,
                "model": cell.model,
                "sample": cell.sample + 1,
                "cached": cell.cached,
                "ttft_ms": cell.ttft_ms,
                "error": cell.error,
                "reply": cell.reply,
                "prompt": json.dumps(
                    cell.prompt_messages
                    if cell.prompt_messages is not None
                    else cell.case.body(cell.model, cell.template)["messages"],
                    ensure_ascii=False,
                ),
                "assertions": json.dumps(
                    [
                        {
                            "type": spec.label,
                            "passed": verdict.passed,
                            "reason": verdict.reason,
                            "score": verdict.score,
                            "raw": verdict.raw,
                        }
                        for spec, verdict in cell.verdicts
                    ],
                    ensure_ascii=False,
                ),
            }
            for cell in cells
        ]
        run = {
            "started_at": meta["started_at"],
            "seconds": meta["seconds"],
            "suite": meta["suite"],
            "status": summary.status,
            "target": meta["target"],
            "summary": {
                **{k: v for k, v in meta.items() if k != "started_at"},
                **summary.as_dict(),
            },
        }
        return self.save_run(run, replies)
