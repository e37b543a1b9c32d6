"""`POST /v1/perception/parse`: what perception-llm understood of a Tavus request."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.completion.heavy_work import json_bytes, run_request_work
from server.completion.preparation import perceive
from server.errors import InvalidRequestError
from server.http.auth import AuthDep, SettingsDep
from server.http.body import decode_json_object, require_json_content_type
from server.http.limits import check_message_limits
from server.services import services

router = APIRouter(dependencies=[AuthDep])

PARSE_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["messages"],
                    "properties": {"messages": {"type": "array", "items": {"type": "object"}}},
                }
            }
        },
    }
}


@router.post(
    "/v1/perception/parse",
    openapi_extra=PARSE_BODY_SCHEMA,
    summary="Parse the perception in a messages list (or a whole chat-completions body)",
)
async def parse_perception(request: Request, settings: SettingsDep) -> Response:
    require_json_content_type(request)
    raw = await request.body()

    def work() -> Response:
        body = decode_json_object(raw)
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise InvalidRequestError(
                'Send {"messages": [...]} or a whole chat-completions body.', param="messages"
            )
        check_message_limits(messages, settings)
        conversation = perceive(messages, settings)
        return json_bytes(conversation.model_dump())

    return await run_request_work(len(raw), services(request), work)
