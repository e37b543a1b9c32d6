"""`POST /v1/perception/parse`: what perception-llm understood of a Tavus request."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from perception import parse_messages
from server.auth import AuthDep, SettingsDep
from server.body import read_json_object
from server.errors import InvalidRequestError

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
async def parse_perception(request: Request, settings: SettingsDep) -> dict[str, Any]:
    body = await read_json_object(request)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequestError(
            'Send {"messages": [...]} or a whole chat-completions body.', param="messages"
        )
    conversation = parse_messages(messages, max_field_chars=settings.perception_max_field_chars)
    result: dict[str, Any] = conversation.model_dump()
    return result
