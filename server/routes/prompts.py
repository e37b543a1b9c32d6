"""`GET /v1/prompts` and `POST /v1/prompts/render`: see and try templates without a model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from perception import Conversation
from prompts.templates import TemplateLibrary
from server.completion.emotion_tags import EmotionPolicy, canonical_tag
from server.completion.heavy_work import json_bytes, run_request_work
from server.completion.preparation import TemplateChoice, prepare
from server.http.auth import AuthDep, SettingsDep
from server.http.body import require_json_content_type
from server.services import services
from server.settings import Settings
from server.wire.schemas import REQUEST_BODY_SCHEMA

router = APIRouter(dependencies=[AuthDep])


@router.get("/v1/prompts", summary="List the prompt templates with their descriptions")
async def list_prompts(request: Request, settings: SettingsDep) -> dict[str, Any]:
    library: TemplateLibrary = services(request).templates
    return {
        "object": "list",
        "default": settings.prompt,
        "data": [
            {"name": name, "description": library.get(name).description} for name in library.names()
        ],
    }


@router.post(
    "/v1/prompts/render",
    openapi_extra=REQUEST_BODY_SCHEMA,
    summary="The exact messages the response model would get, with their token estimate",
)
async def render(request: Request, settings: SettingsDep) -> Response:
    require_json_content_type(request)
    raw = await request.body()
    choice = TemplateChoice.from_http(request.headers, request.query_params)
    templates = services(request).templates  # the edge resolves; the worker gets plain values

    def work() -> Response:
        prepared = prepare(raw, choice, settings, templates)
        conversation = prepared.conversation
        return json_bytes(
            {
                **prepared.rendered.summary(),
                "mode": conversation.mode,
                "issues": [issue.model_dump() for issue in conversation.issues],
                "emotion_tag": emotion_tag_summary(conversation, settings),
            }
        )

    return await run_request_work(len(raw), services(request), work)


def emotion_tag_summary(conversation: Conversation, settings: Settings) -> dict[str, Any] | None:
    """What the reply's emotion tag guarantee does for this request (null when it does not
    apply): the rule, the allowed values, and the tag inserted when the model writes none."""
    rule = conversation.emotion_rule
    if rule is None or not settings.emotion_tags:
        return None
    policy = EmotionPolicy.for_rule(rule, settings.emotion_values, settings.emotion_map)
    return {
        "rule": rule.text,
        "allowed": list(policy.allowed),
        "inserted_when_missing": canonical_tag(policy.for_conversation(conversation)),
    }
