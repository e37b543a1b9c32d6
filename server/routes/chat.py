"""`POST /v1/chat/completions` (and `/chat/completions`, since Tavus appends the route to
whatever `base_url` a persona has): validate, delegate to the completion's owner, return it.

Everything the completion needs from the HTTP request is resolved here into plain values
(`CallFacts`); the owner (server/completion/lifecycle.py) never sees the `Request`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.completion.lifecycle import CallFacts, Completion
from server.completion.preparation import TemplateChoice, prepare_off_loop
from server.http.auth import require_api_key
from server.http.body import require_json_content_type
from server.services import services
from server.wire.schemas import REQUEST_BODY_SCHEMA

# Auth is called directly, not as a dependency: FastAPI's dependency solving cost ~0.1 ms of
# time to first token on this route (benchmarks/relay_latency.py); the other routes keep it.
router = APIRouter()
CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


class CompletionResponse(Response):
    """The route's answer: the completion, answered (and released) by its owner."""

    def __init__(self, completion: Completion) -> None:
        super().__init__()
        self.completion = completion

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.completion.respond(scope, receive, send)


async def chat_completions(request: Request) -> Response:
    app = services(request)
    require_api_key(request, app.settings)
    require_json_content_type(request)
    # The body is read before the slot is taken: 260 connections sending a byte a second held
    # every slot for 30 s (issue 23); reading costs no slot, and the connection guard evicts or
    # times out a slow body.
    raw = await request.body()
    facts = CallFacts.at_edge(
        request.state.request_id,
        raw,
        request.headers,
        request.scope["query_string"].decode("latin-1"),
        capturing=app.capture is not None,
    )
    choice = TemplateChoice.from_http(request.headers, request.query_params)
    completion = await Completion.open(app, facts, lambda: prepare_off_loop(raw, choice, app))
    return CompletionResponse(completion)


for path in CHAT_PATHS:
    router.add_api_route(
        path,
        chat_completions,
        methods=["POST"],
        openapi_extra=REQUEST_BODY_SCHEMA,
        include_in_schema=path.startswith("/v1"),
        summary="Create a chat completion (OpenAI-compatible, streams over SSE)",
    )
