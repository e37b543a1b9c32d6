"""`POST /v1/chat/completions` (and `/chat/completions`, since Tavus appends the route to
whatever `base_url` a persona has)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from perception import parse_messages
from server.auth import AuthDep, SettingsDep
from server.body import read_json_object, validate_body
from server.chunks import ChunkEncoder
from server.errors import InvalidRequestError
from server.prompting import render_for_request
from server.responders import CompletionJob, Responder
from server.schemas import ChatCompletionRequest
from server.streaming import collect_completion, stream_chunks

router = APIRouter(dependencies=[AuthDep])

REQUEST_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ChatCompletionRequest.model_json_schema()}},
    }
}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _keepalive() -> ServerSentEvent:
    return ServerSentEvent(comment="keep-alive", sep="\n")


async def chat_completions(request: Request, settings: SettingsDep) -> Response:
    body = await read_json_object(request)
    completion_request = validate_body(ChatCompletionRequest, body)
    if completion_request.n is not None and completion_request.n != 1:
        raise InvalidRequestError("Only n=1 is supported.", param="n")
    conversation = parse_messages(
        body["messages"], max_field_chars=settings.perception_max_field_chars
    )
    rendered = render_for_request(body, request, conversation)
    job = CompletionJob(
        request=completion_request,
        body=body,
        conversation=conversation,
        prompt_messages=rendered.messages,
    )
    responder: Responder = request.app.state.responder
    encoder = ChunkEncoder(model=responder.model_for(job))
    events = responder.stream(job)
    if not completion_request.stream:
        return JSONResponse(await collect_completion(events, encoder))
    return EventSourceResponse(
        stream_chunks(events, encoder, completion_request.include_usage),
        headers=SSE_HEADERS,
        sep="\n",
        ping=settings.keepalive_seconds,
        ping_message_factory=_keepalive,
    )


for path in ("/v1/chat/completions", "/chat/completions"):
    router.add_api_route(
        path,
        chat_completions,
        methods=["POST"],
        openapi_extra=REQUEST_BODY_SCHEMA,
        include_in_schema=path.startswith("/v1"),
        summary="Create a chat completion (OpenAI-compatible, streams over SSE)",
    )
