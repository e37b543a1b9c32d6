"""Render a parsed conversation into the messages the response model receives.

Templates are files (`templates/*.j2`); perception goes into a nonce-fenced data block in the
latest user turn; the context budget is applied; `render_prompt` is the entry point.
"""

from prompts.render import RenderedPrompt, render_prompt
from prompts.templates import PromptTemplate, TemplateError, TemplateLibrary
from prompts.tokens import estimate_message_tokens, estimate_tokens

__all__ = [
    "PromptTemplate",
    "RenderedPrompt",
    "TemplateError",
    "TemplateLibrary",
    "estimate_message_tokens",
    "estimate_tokens",
    "render_prompt",
]
