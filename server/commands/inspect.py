"""`perception-llm parse` and `render`: what a request's perception is, and what the model
would be sent for it."""

from __future__ import annotations

import argparse
import json

from perception import Conversation, parse_messages
from prompts.render import render_prompt
from prompts.templates import TemplateError
from server.commands.common import UsageError, load_body, settings_or_error, templates_or_error


def parse(args: argparse.Namespace) -> int:
    settings = settings_or_error()
    conversation = parse_messages(
        load_body(args.file)["messages"], max_field_chars=settings.perception_max_field_chars
    )
    if args.pretty:
        print(summarise(conversation))
    else:
        print(json.dumps(conversation.model_dump(), indent=2, ensure_ascii=False))
    return 0


def render(args: argparse.Namespace) -> int:
    settings = settings_or_error()
    library = templates_or_error(settings)
    body = load_body(args.file)
    name = args.prompt or body.get("prompt") or settings.prompt
    try:
        template = library.get(str(name))
    except TemplateError as error:
        raise UsageError(str(error)) from None
    conversation = parse_messages(
        body["messages"], max_field_chars=settings.perception_max_field_chars
    )
    rendered = render_prompt(
        conversation, body["messages"], template, budget_tokens=settings.context_budget_tokens
    )
    print(json.dumps(rendered.summary(), indent=2, ensure_ascii=False))
    return 0


def summarise(conversation: Conversation) -> str:
    """A human-readable account of what was perceived."""
    lines = [f"mode: {conversation.mode}"]
    latest = conversation.latest.model_dump()
    extra = latest.pop("extra")
    seen = {name: value for name, value in latest.items() if value is not None}
    seen.update(extra)
    lines.append("latest:" if seen else "latest: nothing perceived")
    lines.extend(f"  {name}: {value}" for name, value in seen.items())
    lines.append(f"observations: {len(conversation.observations)}")
    for observation in conversation.observations:
        fields = observation.model_dump(exclude={"message_index", "source", "extra"})
        fields.update(observation.extra)
        shown = "; ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        lines.append(f"  [{observation.message_index}] {observation.source}: {shown}")
    lines.append(f"layout: {conversation.layout}")
    lines.extend(
        f"  rule from a user-role wrapper: {rule.text}" for rule in conversation.wrapped_rules
    )
    lines.append(f"messages after cleaning: {len(conversation.messages)}")
    for issue in conversation.issues:
        where = "" if issue.message_index is None else f"[{issue.message_index}] "
        lines.append(f"issue: {where}{issue.kind}: {issue.detail}")
    return "\n".join(lines)
