"""The `perception-llm` command: `serve` the endpoint, `parse` a request's perception.

User errors print one clear line on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from emulator.compare import compare, format_markdown, format_terminal
from emulator.simulate import SimulateOptions, format_report, simulate
from emulator.stream import EndpointError
from perception import Conversation
from prompts.render import render_prompt
from prompts.templates import TemplateError, TemplateLibrary
from scenarios import Scenario, ScenarioError, load_scenario
from server.inprocess import running_server
from server.observability import log_config
from server.settings import ENV_PREFIX, Settings, load_settings
from server.shutdown import exit_cleanly_on_signals

EXAMPLES = """\
examples:
  perception-llm serve                         # http://127.0.0.1:8000/v1, offline responder
  PERCEPTION_LLM_API_KEY=secret perception-llm serve --host 0.0.0.0
  perception-llm parse request.json --pretty   # what was perceived in a Tavus request
  perception-llm render request.json --prompt minimal   # what the model would be sent
  perception-llm simulate --url http://127.0.0.1:8000/v1 --scenario raven1-sarcasm --speculative
  perception-llm compare raven-cooking basic-story --prompts default,minimal --out report.md
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
        "--workers", type=int, default=1, help="worker processes (each with its own event loop)"
    )
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

    simulate = commands.add_parser(
        "simulate",
        help="play a scenario against an endpoint as Tavus would, and check its conformance",
        description=(
            "Send a scenario's turns to BASE_URL/chat/completions exactly as Tavus does (openai "
            "SDK, stream: true, Bearer key, conversation-id header), print each reply as it "
            "streams with time to first token, then a conformance report. Exit status 0: the "
            "endpoint meets the contract; 1: it breaks it; 2: it could not be tested."
        ),
    )
    simulate.add_argument(
        "--url", required=True, help="the persona's base_url, e.g. http://127.0.0.1:8000/v1"
    )
    simulate.add_argument("--api-key", help="the persona's api_key (sent as a Bearer token)")
    simulate.add_argument(
        "--scenario", default="raven-cooking", help="shipped scenario name or a JSON file"
    )
    simulate.add_argument("--model", help="model name to send (default: the scenario's, or echo)")
    simulate.add_argument(
        "--speculative",
        action="store_true",
        help="also send overlapping partial transcripts per turn, abandoned mid-stream",
    )
    simulate.add_argument(
        "--header", action="append", default=[], metavar="K=V", help="persona header"
    )
    simulate.add_argument(
        "--query", action="append", default=[], metavar="K=V", help="default query"
    )
    simulate.add_argument("--json", action="store_true", help="print a machine-readable report")

    compare = commands.add_parser(
        "compare",
        help="run scenarios through several prompt templates and compare the replies",
        description=(
            "Play each scenario once per template (the `prompt` body field chooses it) and show "
            "replies side by side with prompt tokens and time to first token. Without --url, "
            "this server runs in-process with the configured response model."
        ),
    )
    compare.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="names or JSON files")
    compare.add_argument("--prompts", required=True, help="comma-separated template names")
    compare.add_argument("--url", help="an endpoint's base_url (default: in-process server)")
    compare.add_argument("--api-key", help="Bearer key for --url")
    compare.add_argument("--model", help="model name to send (default: the scenario's, or echo)")
    compare.add_argument("--out", help="also write the comparison as Markdown to this file")

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
        if args.command == "simulate":
            return run_simulate(args)
        if args.command == "compare":
            return run_compare(args)
        return parse(args)
    except UsageError as error:
        print(f"perception-llm: error: {error}", file=sys.stderr)
        return 2


SECRET_FIELDS = frozenset({"api_key", "upstream_api_key", "upstream_headers"})  # never echoed


def settings_or_error() -> Settings:
    """The settings, or one line that names the bad variable and what it accepts (exit 2)."""
    try:
        return load_settings()
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0])
        got = first.get("input")
        shown = ""
        if isinstance(got, str | int | float) and field not in SECRET_FIELDS:
            shown = f" (got {str(got)[:60]!r})"
        raise UsageError(f"{ENV_PREFIX}{field.upper()}: {first['msg']}{shown}") from None
    except SettingsError as error:  # a JSON-valued setting that is not JSON
        match = re.search(r'field "(\w+)"', str(error))
        field = match.group(1) if match else ""
        example = '["https://app.example"]' if field == "cors_origins" else '{"name": "value"}'
        raise UsageError(f"{ENV_PREFIX}{field.upper()}: must be JSON, e.g. {example}") from None


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
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    raise_file_limit(settings.max_connections)
    restore = exit_cleanly_on_signals()
    try:
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            log_level=settings.log_level.lower(),
            log_config=log_config(settings.log_level, settings.log_format),
            access_log=settings.access_log,
            http="server.protocol:GuardedHttpProtocol",
            # The stdlib loop, not uvloop: under 300 concurrent streams uvloop left new
            # connections unaccepted for up to 1.7 s (/healthz, new calls), asyncio 0.03-0.19 s
            # (benchmarks/healthz_under_stream_load.py).
            loop="asyncio",
            timeout_keep_alive=5,
            # A backstop past our own drain, which ends streams at the grace period.
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
        )
    finally:
        restore()
    return 0


def raise_file_limit(connections: int) -> None:
    """Raise the soft open-file limit to the hard one, so `max_connections` sockets fit (the
    default soft limit, 1,024, let 1,100 idle connections fail every request)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, connections + 1024)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft < connections + 256:
        logging.getLogger(__name__).warning(
            "open-file limit %d is below PERCEPTION_LLM_MAX_CONNECTIONS (%d) plus headroom; "
            "raise it (LimitNOFILE= / --ulimit nofile=) or lower the setting",
            soft,
            connections,
        )


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
    conversation = settings.parse(load_body(args.file)["messages"])
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
    conversation = settings.parse(body["messages"])
    rendered = render_prompt(
        conversation, body["messages"], template, budget_tokens=settings.context_budget_tokens
    )
    print(json.dumps(rendered.summary(), indent=2, ensure_ascii=False))
    return 0


def key_values(pairs: list[str], flag: str) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes K=V, got {pair!r}")
        result[key] = value
    return result


def load_scenarios(names: list[str]) -> list[Scenario]:
    try:
        return [load_scenario(name) for name in names]
    except ScenarioError as error:
        raise UsageError(str(error)) from None


def run_simulate(args: argparse.Namespace) -> int:
    (scenario,) = load_scenarios([args.scenario])
    options = SimulateOptions(
        url=args.url,
        api_key=args.api_key,
        model=args.model,
        speculative=args.speculative,
        headers=key_values(args.header, "--header"),
        query=key_values(args.query, "--query"),
        quiet=args.json,
    )
    try:
        report = asyncio.run(simulate(scenario, options))
    except EndpointError as error:
        raise UsageError(str(error)) from None
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else 1


def run_compare(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(args.scenarios)
    templates = [name.strip() for name in args.prompts.split(",") if name.strip()]
    if not templates:
        raise UsageError("--prompts needs at least one template name")
    with ExitStack() as stack:
        url, api_key = args.url, args.api_key
        if url is None:
            settings = settings_or_error()
            library = templates_or_error(settings)
            for name in templates:
                try:
                    library.get(name)
                except TemplateError as error:
                    raise UsageError(str(error)) from None
            url = stack.enter_context(running_server(settings)) + "/v1"
            api_key = settings.api_key.get_secret_value() if settings.api_key else None
        options = SimulateOptions(url=url, api_key=api_key, model=args.model)
        try:
            comparisons = asyncio.run(compare(scenarios, templates, options))
        except EndpointError as error:
            raise UsageError(str(error)) from None
    print(format_terminal(comparisons))
    if args.out:
        try:
            Path(args.out).write_text(format_markdown(comparisons, url), encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot write {args.out}: {error.strerror}") from None
        print(f"\nreport written to {args.out}")
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
