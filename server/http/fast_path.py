"""The completion route without the framework's routing stack: the one route on a call's path.

Every other route goes through FastAPI as usual. `POST /v1/chat/completions` (and
`/chat/completions`) is dispatched before it, straight to the same endpoint function, wrapped in
the same two plain-ASGI middlewares (request id and metrics; body limit) and the same error
handler — so its responses, headers and error bodies are identical — but without the ten layers
between (Starlette's error and exception middlewares, FastAPI's body-limit, telemetry and exit-
stack middlewares, the router's regex matching, the request/response wrappers), each of which
also wraps every `send` of the stream. On an idle server that stack cost ~0.4 ms of time to first
token (benchmarks/relay_latency.py). Issue 24 measured it again beside FastAPI's own route in
the same runs: the framework's stack cost +0.17 to +2.29 ms p50 (median +1.51, 6 runs) and a
median 12 % more CPU per request for the short body on a busy 2-core machine, so it stays. It
is the only path for this route in every configuration — with CORS configured, the same CORS
middleware is in the chain (`cors_options` is the one place its options are set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import error_response, to_api_error
from server.http.limits import BodyLimitMiddleware
from server.http.observability import RequestContextMiddleware
from server.metrics import Metrics
from server.routes.chat import CHAT_PATHS, chat_completions


@dataclass(frozen=True)
class RouteLabel:
    """What the metrics middleware reads from `scope["route"]`."""

    path: str


ROUTES = {path: RouteLabel(path) for path in CHAT_PATHS}


async def _chat_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    try:
        response = await chat_completions(request)
        await response(scope, receive, send)  # errors before its first byte are HTTP errors too
    except Exception as error:  # the same mapping as the app's exception handlers
        await error_response(to_api_error(request, error))(scope, receive, send)


def cors_options(origins: list[str]) -> dict[str, Any]:
    """The CORS middleware's options, for the app's stack and this route's alike."""
    return {
        "allow_origins": origins,
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["*"],
        "expose_headers": ["x-request-id"],
    }


def chat_fast_path(metrics: Metrics, max_body_bytes: int, cors_origins: list[str]) -> ASGIApp:
    """The same middlewares as the app's, in the same order, around the endpoint."""
    chain: ASGIApp = BodyLimitMiddleware(_chat_endpoint, max_bytes=max_body_bytes)
    if cors_origins:
        chain = CORSMiddleware(chain, **cors_options(cors_origins))
    return RequestContextMiddleware(chain, metrics=metrics)


class PerceptionApp(FastAPI):
    """FastAPI, with the completion route dispatched first (see the module docstring)."""

    fast_chat: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.fast_chat is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in ROUTES
        ):
            scope["app"] = self
            scope["route"] = ROUTES[scope["path"]]
            await self.fast_chat(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
