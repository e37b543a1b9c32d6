"""One preparation: a request's body and template choice turned into what the model gets.

`prepare(raw, choice, settings, templates)` decodes, validates, checks the limits, chooses the
template (the one precedence, server/completion/prompting.py), parses the perception and
renders the messages. Every caller goes through it: the completion route (via
`prepare_off_loop`), `POST /v1/prompts/render`, the CLI's `render` (and `parse`, for its
perception step), and `compare` and `eval`, which ask a server's render route and completion
route. So a body the server refuses is refused everywhere with the same message, and what
`render` shows is what the model gets.

It is pure: plain values in, a `Prepared` out; no `Request`, no `Services`, no I/O. The HTTP
edge resolves headers and query into a `TemplateChoice`; a test checks this module imports
no web framework. The only randomness is the fence nonce (new per request by design, see
prompts/fence.py); pass `fence=` to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perception import Conversation, parse_messages
from prompts.fence import Fence
from prompts.render import RenderedPrompt
from prompts.templates import TemplateLibrary
from server.completion.control import conversation_id_of
from server.completion.heavy_work import run_request_work
from server.completion.prompting import (
    PROMPT_HEADER,
    PROMPT_QUERY,
    chosen_template_name,
    render_for_model,
    template_named,
)
from server.errors import InvalidRequestError
from server.http.body import decode_json_object, validate_body
from server.http.limits import check_message_limits, check_request_limits
from server.settings import Settings
from server.wire.schemas import ChatCompletionRequest

if TYPE_CHECKING:  # only a type here: importing it would load the whole app (the CLI's
    # `parse` and `render` use this module without a server)
    from server.services import Services


@dataclass(frozen=True)
class TemplateChoice:
    """Where a caller named a template outside the body, as plain values."""

    header: str | None = None  # X-Prompt-Template
    query: str | None = None  # ?prompt=
    conversation_id: str | None = None  # for the A/B split

    @classmethod
    def from_http(
        cls, headers: Mapping[str, str], query_params: Mapping[str, str]
    ) -> TemplateChoice:
        """From a request's headers (lower-case names, as Starlette's are) and query."""
        return cls(
            header=headers.get(PROMPT_HEADER),
            query=query_params.get(PROMPT_QUERY),
            conversation_id=conversation_id_of(headers),
        )


@dataclass(frozen=True)
class Prepared:
    body: dict[str, Any]
    completion_request: ChatCompletionRequest
    conversation: Conversation
    rendered: RenderedPrompt


def prepare(
    raw: bytes | dict[str, Any],
    choice: TemplateChoice,
    settings: Settings,
    templates: TemplateLibrary,
    *,
    fence: Fence | None = None,
) -> Prepared:
    """Decode, validate, choose the template, parse and render: all the CPU work a request
    needs before the model. `raw` is the body's bytes, or an already decoded object (the CLI
    reads files). Raises `InvalidRequestError` (a 400) for a body or template it refuses."""
    body = decode_json_object(raw) if isinstance(raw, bytes) else raw
    if isinstance(body.get("messages"), list):  # before validating them: see server/http/body.py
        check_message_limits(body["messages"], settings)
    completion_request = validate_body(ChatCompletionRequest, body)
    if completion_request.n is not None and completion_request.n != 1:
        raise InvalidRequestError("Only n=1 is supported.", param="n")
    check_request_limits(completion_request, body, settings)
    name = chosen_template_name(
        body,
        header=choice.header,
        query=choice.query,
        conversation_id=choice.conversation_id,
        settings=settings,
    )
    template = template_named(name, templates)
    conversation = perceive(body["messages"], settings, instructions=False)
    rendered = render_for_model(body, conversation, template, settings, fence=fence)
    return Prepared(body, completion_request, conversation, rendered)


def perceive(messages: Any, settings: Settings, *, instructions: bool = True) -> Conversation:
    """The perception step of `prepare`, alone (the parse routes and command show it).
    `instructions=False` skips splitting the system text into parts: the model does not need
    them, only the parse output shows them."""
    return parse_messages(
        messages, max_field_chars=settings.perception_max_field_chars, instructions=instructions
    )


async def prepare_off_loop(raw: bytes, choice: TemplateChoice, services: Services) -> Prepared:
    """`prepare`, in the worker thread for a large body (server/completion/heavy_work.py)."""
    return await run_request_work(
        len(raw),
        services,
        lambda: prepare(raw, choice, services.settings, services.templates),
    )
