"""`GET /v1/models` (and `/models`) and `GET /healthz`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from server.http.auth import AuthDep
from server.responders.base import Responder
from server.services import services

router = APIRouter()


async def list_models(request: Request) -> dict[str, Any]:
    responder: Responder = services(request).responder
    created = services(request).started_at
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "perception-llm"}
            for name in responder.served_models()
        ],
    }


for path in ("/v1/models", "/models"):
    router.add_api_route(
        path,
        list_models,
        methods=["GET"],
        dependencies=[AuthDep],
        include_in_schema=path.startswith("/v1"),
        summary="List the models this server answers as",
    )


@router.get(
    "/metrics",
    dependencies=[AuthDep],
    summary="Prometheus metrics (needs the API key when one is set)",
    response_class=Response,
)
async def metrics(request: Request) -> Response:
    registry = services(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", summary="Liveness: 200 while the process serves requests")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
