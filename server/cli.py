"""The `perception-llm` command: `serve` the endpoint, `parse` a request's perception.

User errors print one clear line on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from perception import Conversation, parse_messages
from prompts.render import render_prompt
from prompts.templates import TemplateError, TemplateLibrary
from server.settings import Settings, load_settings

EXAMPLES = """\
examples:
  perception-llm serve                         # http://127.0.0.1:8000/v1, offline responder
  PERCEPTION_LLM_API_KEY=secret perception-llm serve --host 0.0.0.0
  perception-llm parse request.json --pretty   # what was perceived in a Tavus request
  perception-llm render request.json --prompt minimal   # what the model would be sent
  cat request.json | perception-llm parse -
"""


class UsageError(Exception):
    """A mistake in how the command was called or in its input: one line, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perception-llm",
        description="Custom-LLM backend for Tavus personas that understands perception.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the OpenAI-compatible server")
    serve.add_argument(
        "--host", help="interface to bind (default: PERCEPTION_LLM_HOST or 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, help="port (default: PERCEPTION_LLM_PORT or 8000)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback host without PERCEPTION_LLM_API_KEY",
    )

    render = commands.add_parser(
        "render", help="print the messages the response model would get for a request"
    )
    render.add_argument("file", help="a chat-completions body or messages list (JSON); - for stdin")
    render.add_argument("--prompt", help="template name (default: the body's `prompt` or setting)")

    parse = commands.add_parser("parse", help="print the perception parsed from a request")
    parse.add_argument(
        "file", help="a messages list or a chat-completions body (JSON); - for stdin"
    )
    parse.add_argument("--pretty", action="store_true", help="a readable summary instead of JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "render":
            return render(args)
        return parse(args)
    except UsageError as error:
        print(f"perception-llm: error: {error}", file=sys.stderr)
        return 2


def settings_or_error() -> Settings:
    try:
        return load_settings()
    except ValidationError as error:
        first = error.errors()[0]
        raise UsageError(f"bad setting {first['loc'][0]}: {first['msg']}") from None


def templates_or_error(settings: Settings) -> TemplateLibrary:
    try:
        library = TemplateLibrary(settings.prompts_dir)
        library.get(settings.prompt)
    except TemplateError as error:
        raise UsageError(str(error)) from None
    return library


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = settings_or_error()
    templates_or_error(settings)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    if args.insecure:
        settings = settings.model_copy(update={"allow_insecure": True})
    problem = settings.key_required_host_problem(host)
    if problem:
        raise UsageError(problem)
    uvicorn.run(
        "server.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
    )
    return 0


def load_body(source: str) -> dict[str, Any]:
    """A chat-completions body from a file; a bare messages list becomes `{"messages": …}`."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read {source}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{source} is not JSON: {error.msg} at line {error.lineno}") from None
    if isinstance(data, list):
        data = {"messages": data}
    if not isinstance(data, dict):
        raise UsageError(f"{source} must hold a messages list or a chat-completions body")
    if not isinstance(data.get("messages"), list):
        raise UsageError(f'{source} has no "messages" list')
    return data


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
    lines.append(f"messages after cleaning: {len(conversation.messages)}")
    for issue in conversation.issues:
        where = "" if issue.message_index is None else f"[{issue.message_index}] "
        lines.append(f"issue: {where}{issue.kind}: {issue.detail}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
