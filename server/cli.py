"""The `perception-llm` command line: argument parsing and dispatch, nothing else.

Each command lives in `server/commands/` and is imported only when it runs, so `--help` and
`parse` do not pay for uvicorn, the app or the openai SDK. User errors print one clear line on
stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EXAMPLES = """\
examples:
  perception-llm serve                         # http://127.0.0.1:8000/v1, offline responder
  PERCEPTION_LLM_API_KEY=secret perception-llm serve --host 0.0.0.0
  perception-llm parse request.json --pretty   # what was perceived in a Tavus request
  perception-llm render request.json --prompt minimal   # what the model would be sent
  perception-llm simulate --url http://127.0.0.1:8000/v1 --scenario raven1-sarcasm --speculative
  perception-llm compare raven-cooking basic-story --prompts default,minimal --out report.md
  cat request.json | perception-llm parse -
  perception-llm serve --capture               # record calls; then: perception-llm calls list
  perception-llm calls export CONVERSATION_ID --as scenario --out my-call.json
"""


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
        "--capture",
        nargs="?",
        const="",
        metavar="DB_URL",
        help="record calls (default database: sqlite:///perception-llm-calls.db)",
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

    calls = commands.add_parser(
        "calls",
        help="captured calls (PERCEPTION_LLM_CAPTURE): list, show, export, replay, delete",
        description=(
            "Read the capture database (PERCEPTION_LLM_CAPTURE, or --db). `list` shows "
            "conversations (or one conversation's calls); `show` one call; `export` turns a "
            "conversation's latest call into a simulate scenario or a parser fixture; `replay` "
            "runs that scenario through templates like `compare`; `delete` removes a "
            "conversation's calls (or, with --older-than DAYS, every older call)."
        ),
    )
    calls.add_argument("action", choices=["list", "show", "export", "replay", "delete"])
    calls.add_argument(
        "target", nargs="?", help="a conversation id (list/export/replay) or call id"
    )
    calls.add_argument("--db", help="capture database URL (default: PERCEPTION_LLM_CAPTURE)")
    calls.add_argument("--limit", type=int, default=50, help="most rows to list")
    calls.add_argument("--as", dest="form", choices=["scenario", "fixture"], default="scenario")
    calls.add_argument("--out", help="write the export to this file instead of stdout")
    calls.add_argument("--prompts", default="default,minimal", help="replay: template names")
    calls.add_argument("--url", help="replay: an endpoint's base_url (default: in-process)")
    calls.add_argument("--api-key", help="replay: Bearer key for --url")
    calls.add_argument("--model", help="replay: model name to send")
    calls.add_argument(
        "--older-than", type=float, metavar="DAYS", help="delete: every call older than this"
    )

    parse = commands.add_parser("parse", help="print the perception parsed from a request")
    parse.add_argument(
        "file", help="a messages list or a chat-completions body (JSON); - for stdin"
    )
    parse.add_argument("--pretty", action="store_true", help="a readable summary instead of JSON")
    return parser


# command → (module in server.commands, function in it)
COMMANDS = {
    "serve": ("serve", "serve"),
    "parse": ("inspect", "parse"),
    "render": ("inspect", "render"),
    "simulate": ("emulate", "run_simulate"),
    "compare": ("emulate", "run_compare"),
    "calls": ("calls", "calls"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from server.commands.common import UsageError

    module_name, function = COMMANDS[args.command]
    module = importlib.import_module(f"server.commands.{module_name}")
    try:
        status: int = getattr(module, function)(args)
    except UsageError as error:
        print(f"perception-llm: error: {error}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
