"""Turning a request's raw body into what the response model needs: decoded, validated, parsed,
rendered — all the CPU work of a request, done once, off the event loop when the body is large."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from perception import Conversation, parse_messages
from prompts.render import RenderedPrompt
from server.completion.heavy_work import run_request_work
from server.completion.prompting import render_for_request
from server.errors import InvalidRequestError
from server.http.body import decode_json_object, validate_body
from server.http.limits import check_message_limits, check_request_limits
from server.services import Services
from server.settings import Settings
from server.wire.schemas import ChatCompletionRequest


@dataclass(frozen=True)
class Prepared:
    body: dict[str, Any]
    completion_request: ChatCompletionRequest
    conversation: Conversation
    rendered: RenderedPrompt


def prepare_now(raw: bytes, request: Request, settings: Settings) -> Prepared:
    """Decode, validate, parse and render: all the CPU work a request needs before the model."""
    body = decode_json_object(raw)
    if isinstance(body.get("messages"), list):  # before validating them: see server/http/body.py
        check_message_limits(body["messages"], settings)
    completion_request = validate_body(ChatCompletionRequest, body)
    if completion_request.n is not None and completion_request.n != 1:
        raise InvalidRequestError("Only n=1 is supported.", param="n")
    check_request_limits(completion_request, body, settings)
    conversation = parse_messages(
        body["messages"], max_field_chars=settings.perception_max_field_chars, instructions=False
    )
    rendered = render_for_request(body, request, conversation)
    return Prepared(body, completion_request, conversation, rendered)


async def prepare(raw: bytes, request: Request, services: Services) -> Prepared:
    """`prepare_now`, in the worker thread for a large body (server/completion/heavy_work.py)."""
    return await run_request_work(
        len(raw), services, lambda: prepare_now(raw, request, services.settings)
    )
