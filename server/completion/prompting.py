"""Choosing a prompt template per request and rendering the response model's messages.

Precedence, each a place a Tavus persona can set it: body field `prompt`
(`extra_body`), header `X-Prompt-Template` (`headers`), query `?prompt=` (`default_query`), then
the A/B split's arm for the conversation id (`PERCEPTION_LLM_PROMPT_SPLIT`,
server/completion/prompt_split.py), then the `PERCEPTION_LLM_PROMPT` setting. `prompt` is our
knob: it is never forwarded upstream.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from perception import Conversation
from prompts.render import RenderedPrompt, render_prompt
from prompts.templates import PromptTemplate, TemplateError, TemplateLibrary
from server.completion.control import conversation_id_of
from server.completion.prompt_split import split_template
from server.errors import InvalidRequestError
from server.services import services
from server.settings import Settings

PROMPT_FIELD = "prompt"
PROMPT_HEADER = "x-prompt-template"
PROMPT_QUERY = "prompt"


def chosen_template_name(body: dict[str, Any], request: Request, settings: Settings) -> str:
    if PROMPT_FIELD in body:
        name = body[PROMPT_FIELD]
        if not isinstance(name, str):
            raise InvalidRequestError(
                "`prompt` must be a template name (a string).", param="prompt"
            )
        return name
    return (
        request.headers.get(PROMPT_HEADER)
        or request.query_params.get(PROMPT_QUERY)
        or split_template(settings.split, conversation_id_of(request.headers))
        or settings.prompt
    )


def chosen_template(body: dict[str, Any], request: Request) -> PromptTemplate:
    library: TemplateLibrary = services(request).templates
    name = chosen_template_name(body, request, services(request).settings)
    try:
        return library.get(name)
    except TemplateError as error:
        raise InvalidRequestError(str(error), param="prompt", code="unknown_prompt") from None


def render_for_request(
    body: dict[str, Any], request: Request, conversation: Conversation
) -> RenderedPrompt:
    settings: Settings = services(request).settings
    return render_prompt(
        conversation,
        body["messages"],
        chosen_template(body, request),
        budget_tokens=settings.context_budget_tokens,
    )
