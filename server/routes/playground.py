"""The web playground (`/playground`) and the two helpers it needs beyond the public API:
examples to start from, and encoding a composed conversation exactly as Tavus would (the same
`Scenario` code the emulator uses, so the page holds no copy of the Tavus formats)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from server.auth import AuthDep
from server.body import read_json_object, validate_body
from server.emulator.scenario import (
    SCENARIO_DIR,
    Scenario,
    ScenarioError,
    load_scenario,
    scenario_request,
    shipped_scenarios,
)

PLAYGROUND_DIR = Path(__file__).resolve().parents[1] / "playground"
STATIC_DIR = PLAYGROUND_DIR / "static"
SAMPLES_DIR = PLAYGROUND_DIR / "samples"

router = APIRouter()
api = APIRouter(dependencies=[AuthDep])


@router.get("/playground", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)


@api.get("/v1/playground/examples", summary="Sample Tavus requests and shipped scenarios")
async def examples() -> dict[str, Any]:
    samples = [
        {"name": path.stem, "body": json.loads(path.read_text(encoding="utf-8"))}
        for path in sorted(SAMPLES_DIR.glob("*.json"))
    ]
    scenarios = []
    for name in shipped_scenarios():
        try:
            scenario = load_scenario(str(SCENARIO_DIR / f"{name}.json"))
        except ScenarioError:
            continue  # a broken example file is not the visitor's problem
        scenarios.append(scenario.model_dump(exclude_none=True))
    return {"samples": samples, "scenarios": scenarios}


@api.post("/v1/playground/encode", summary="A composed conversation, encoded as Tavus sends it")
async def encode(request: Request) -> dict[str, Any]:
    body = await read_json_object(request)
    body.setdefault("name", "composed")
    return scenario_request(validate_body(Scenario, body))
