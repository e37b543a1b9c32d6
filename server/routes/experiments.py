"""`/v1/experiments…`: runs of `perception-llm eval`, for the playground's Experiments section.

Runs live in the capture database when the server records calls, else in the local file
`perception-llm eval` writes by default (`perception-llm-evals.db` in the working directory):
the same place the CLI chose, so a run shows up without configuring anything. The store is
synchronous, so each read runs in a worker thread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from sqlalchemy import select

from server.capture.schema import eval_replies, eval_runs
from server.capture.settings import DEFAULT_EXPERIMENTS_URL
from server.capture.store import CaptureStore, CaptureStoreError
from server.errors import NotFoundError, ServiceUnavailableError
from server.http.auth import AuthDep
from server.services import services

router = APIRouter(dependencies=[AuthDep])


def store_url(request: Request) -> str | None:
    capture = services(request).capture
    if capture is not None:
        return str(services(request).settings.capture)
    local = Path(DEFAULT_EXPERIMENTS_URL.removeprefix("sqlite:///"))
    return DEFAULT_EXPERIMENTS_URL if local.is_file() else None


def _read(url: str, query: Any) -> list[dict[str, Any]]:
    store = CaptureStore(url)
    try:
        store.upgrade()  # an older database gains the experiment tables (idempotent)
        with store.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        store.dispose()


def valid_id(row_id: int) -> bool:
    """Whether `row_id` can be a row's id: past any database's integer it cannot (that was a
    500, as for /v1/calls before issue 23)."""
    return 0 < row_id < 2**63


async def rows(request: Request, query: Any) -> list[dict[str, Any]] | None:
    url = store_url(request)
    if url is None:
        return None
    try:
        return await anyio.to_thread.run_sync(_read, url, query)
    except CaptureStoreError as error:
        raise ServiceUnavailableError(str(error)) from None


@router.get("/v1/experiments", summary="Eval runs, newest first")
async def list_runs(request: Request, limit: int = 50) -> dict[str, Any]:
    columns = [c for c in eval_runs.c if c.name != "summary"]
    query = select(*columns).order_by(eval_runs.c.id.desc()).limit(max(1, min(limit, 500)))
    found = await rows(request, query)
    return {"object": "list", "stored": found is not None, "data": found or []}


@router.get("/v1/experiments/{run_id}", summary="One run: its matrix, templates and failures")
async def one_run(request: Request, run_id: int) -> dict[str, Any]:
    if not valid_id(run_id):
        raise NotFoundError(f"No eval run {run_id}.")
    found = await rows(request, select(eval_runs).where(eval_runs.c.id == run_id))
    if not found:
        raise NotFoundError(f"No eval run {run_id}.")
    run = found[0]
    run["summary"] = json.loads(run["summary"])
    return run


@router.get(
    "/v1/experiments/{run_id}/replies",
    summary="A run's replies (optionally one cell), with the exact prompt and each verdict",
)
async def run_replies(
    request: Request,
    run_id: int,
    test: str | None = None,
    template: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    # An unknown run is a 404, as for the run itself (it answered 200 with no replies); an id
    # past the database's integer is unknown too (it overflowed into a 500).
    if not valid_id(run_id) or not await rows(
        request, select(eval_runs.c.id).where(eval_runs.c.id == run_id)
    ):
        raise NotFoundError(f"No eval run {run_id}.")
    query = select(eval_replies).where(eval_replies.c.run_id == run_id)
    for column, value in (("test", test), ("template", template), ("model", model)):
        if value is not None:
            query = query.where(eval_replies.c[column] == value)
    found = await rows(request, query.order_by(eval_replies.c.id))
    for reply in found or []:
        reply["prompt"] = json.loads(reply["prompt"])
        reply["assertions"] = json.loads(reply["assertions"])
    return {"object": "list", "data": found or []}
