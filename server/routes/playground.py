"""The web playground (`/playground`) and the two helpers it needs beyond the public API:
examples to start from, and encoding a composed conversation exactly as Tavus would (the same
`Scenario` code the emulator uses, so the page holds no copy of the Tavus formats)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from scenarios import Scenario, ScenarioError, load_scenario, scenario_request, shipped_scenarios
from server.completion.heavy_work import json_bytes, run_request_work
from server.http.auth import AuthDep
from server.http.body import decode_json_object, require_json_content_type, validate_body
from server.samples import sample_requests
from server.services import services

# The static page is served by StaticFiles, which needs a directory: the package's own (a wheel
# installs it as files; the packaging test runs the installed copy).
STATIC_DIR = Path(str(files("server").joinpath("playground", "static")))

router = APIRouter()
api = APIRouter(dependencies=[AuthDep])


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    """A browser opening the server's address lands on the playground, not a JSON 404."""
    return RedirectResponse("/playground", status_code=307)


@router.get("/playground", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)


@api.get("/v1/playground/examples", summary="Sample Tavus requests and shipped scenarios")
async def examples() -> dict[str, Any]:
    samples = [{"name": name, "body": body} for name, body in sample_requests().items()]
    scenarios = []
    for name in shipped_scenarios():
        try:
            scenario = load_scenario(name)
        except ScenarioError:
            continue  # a broken example file is not the visitor's problem
        scenarios.append(scenario.model_dump(exclude_none=True))
    return {"samples": samples, "scenarios": scenarios}


@api.post("/v1/playground/encode", summary="A composed conversation, encoded as Tavus sends it")
async def encode(request: Request) -> Response:
    require_json_content_type(request)
    raw = await request.body()
    # Answered by the configured response model, as /v1/models lists it first (the upstream's
    # before `echo`), not by the offline responder whatever is configured (issue 21).
    default_model = services(request).responder.served_models()[0]

    def work() -> Response:
        body = decode_json_object(raw)
        body.setdefault("name", "composed")
        return json_bytes(scenario_request(validate_body(Scenario, body), default_model))

    return await run_request_work(len(raw), services(request), work)
