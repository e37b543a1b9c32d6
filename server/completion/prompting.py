"""Choosing a request's prompt template and rendering the response model's messages.

The one precedence, for every caller (the completion route, `POST /v1/prompts/render`, the
CLI's `render`, and `compare` and `eval` through those routes), first match wins:

1. body field `prompt` (a persona's `extra_body`; the CLI's `render --prompt` sets it): a
   string, or a 400. It is our knob: it is never forwarded upstream.
2. header `X-Prompt-Template` (a persona's `headers`);
3. query `?prompt=` (a persona's `default_query`);
4. the A/B split's arm for the conversation id (`PERCEPTION_LLM_PROMPT_SPLIT`,
   server/completion/prompt_split.py); a request without a conversation id has no arm;
5. the `PERCEPTION_LLM_PROMPT` setting.

An empty header or query value names nothing (the next source decides): a proxy that forwards
an unset header as empty must not turn every request into a 400. An empty body field is a
name the client chose, and an unknown name is a 400 that lists the templates.

Nothing here reads an HTTP request: the edge resolves headers and query into plain values
(`TemplateChoice`, server/completion/preparation.py) so this runs anywhere, threads included.
"""

from __future__ import annotations

from typing import Any

from perception import Conversation
from prompts.fence import Fence
from prompts.render import RenderedPrompt, render_prompt
from prompts.templates import PromptTemplate, TemplateError, TemplateLibrary
from server.completion.prompt_split import split_template
from server.errors import InvalidRequestError
from server.settings import Settings

PROMPT_FIELD = "prompt"
PROMPT_HEADER = "x-prompt-template"
PROMPT_QUERY = "prompt"


def chosen_template_name(
    body: dict[str, Any],
    *,
    header: str | None,
    query: str | None,
    conversation_id: str | None,
    settings: Settings,
) -> str:
    """The template name by the precedence above (not yet checked against the library)."""
    if PROMPT_FIELD in body:
        name = body[PROMPT_FIELD]
        if not isinstance(name, str):
            raise InvalidRequestError(
                "`prompt` must be a template name (a string).", param="prompt"
            )
        return name
    return header or query or split_template(settings.split, conversation_id) or settings.prompt


def template_named(name: str, templates: TemplateLibrary) -> PromptTemplate:
    try:
        return templates.get(name)
    except TemplateError as error:
        raise InvalidRequestError(str(error), param="prompt", code="unknown_prompt") from None


def render_for_model(
    body: dict[str, Any],
    conversation: Conversation,
    template: PromptTemplate,
    settings: Settings,
    *,
    fence: Fence | None = None,
) -> RenderedPrompt:
    """The messages the response model gets, within the context budget."""
    return render_prompt(
        conversation,
        body["messages"],
        template,
        budget_tokens=settings.context_budget_tokens,
        fence=fence,
    )
