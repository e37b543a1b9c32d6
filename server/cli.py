"""The `perception-llm` command line: argument parsing and dispatch, nothing else.

Each command lives in `server/commands/` and is imported only when it runs, so `--help` and
`parse` do not pay for uvicorn, the app or the openai SDK. User errors print one clear line on
stderr and exit with status 2, never a traceback; so do mistakes in the arguments themselves.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from server.cli_examples import COMMAND_EXAMPLES, EXAMPLES


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line on stderr and exit status 2 (argparse's own
    prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="perception-llm",
        description="Custom-LLM backend for Tavus personas that understands perception.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    class Commands:
        """`add_parser` with the command's examples and the raw layout that keeps them."""

        @staticmethod
        def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
            command = subparsers.add_parser(
                name,
                epilog=COMMAND_EXAMPLES[name],
                formatter_class=argparse.RawDescriptionHelpFormatter,
                **kwargs,
            )
            # An unknown option is reported by the command's parser, naming its --help.
            command.set_defaults(command_parser=command)
            return command

    commands = Commands()

    serve = commands.add_parser("serve", help="run the OpenAI-compatible server")
    serve.add_argument(
        "--host", help="interface to bind (default: PERCEPTION_LLM_HOST or 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, help="port (default: PERCEPTION_LLM_PORT or 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="1 only: for more cores run replicas behind deploy/nginx (README: Deploying)",
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
        "--layout",
        choices=["system", "user"],
        help="where raven perception and Tavus' rules go (default: the scenario's): system "
        "messages, or user-role messages as some Tavus models receive them",
    )
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
        help="captured calls (PERCEPTION_LLM_CAPTURE): list, show, export, replay, stats, delete",
        description=(
            "Read the capture database (PERCEPTION_LLM_CAPTURE, or --db). `list` shows "
            "conversations (or one conversation's calls); `show` one call; `export` turns a "
            "conversation's latest call into a simulate scenario or a parser fixture; `replay` "
            "runs that scenario through templates like `compare`; `stats --by template` compares "
            "the arms of an A/B split (PERCEPTION_LLM_PROMPT_SPLIT) with 95 % intervals; `delete` "
            "removes a conversation's calls (or, with --older-than DAYS, every older call)."
        ),
    )
    calls.add_argument("action", choices=["list", "show", "export", "replay", "stats", "delete"])
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
        "--by",
        choices=["template", "model", "replica"],
        default="template",
        help="stats: compare arms by",
    )
    calls.add_argument("--since", help="stats: only calls since 7d, 24h, 30m or a date")
    calls.add_argument("--json", action="store_true", help="stats: print JSON")
    calls.add_argument(
        "--older-than", type=float, metavar="DAYS", help="delete: every call older than this"
    )

    evaluate = commands.add_parser(
        "eval",
        help="run an eval suite: assertions over templates x models, pass rates, exit status",
        description=(
            "Run SUITE (a JSON or YAML file, or a shipped example such as perception-basics): "
            "every test x template x model x sample gets a reply, checked by its assertions. "
            "Prints the matrix with 95 % Wilson intervals, the winner per assertion and the "
            "failing replies; keeps the run in the capture database (else a local SQLite file) "
            "for the playground. Exit 0: every template reached the threshold; 1: one did not; "
            "2: a bad suite, or errored cells (a model or judge outage)."
        ),
    )
    evaluate.add_argument("suite", nargs="?", metavar="SUITE", help="suite file or shipped name")
    evaluate.add_argument("--url", help="an endpoint's base_url (default: this server in process)")
    evaluate.add_argument("--api-key", help="Bearer key for --url")
    evaluate.add_argument("--models", help="comma-separated models (default: the suite's)")
    evaluate.add_argument("--templates", help="comma-separated templates (default: the suite's)")
    evaluate.add_argument(
        "--from-capture",
        type=int,
        metavar="N",
        help="also replay the last N captured conversations",
    )
    evaluate.add_argument("--db", help="store for runs and the cache (default: capture database)")
    evaluate.add_argument("-j", "--concurrency", type=int, default=4, help="cells at once")
    evaluate.add_argument("--no-cache", action="store_true", help="resample every reply")
    evaluate.add_argument(
        "--max-calls", type=int, default=500, help="hard cap on model + judge calls (retries too)"
    )
    evaluate.add_argument("--attempts", type=int, default=4, help="tries per call (429/5xx)")
    evaluate.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    evaluate.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")

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
    "eval": ("evaluate", "evaluate"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A closed pipe (`| head`) or Ctrl-C ends it quietly, as for any Unix tool:
    exit status 128 + the signal (141 for SIGPIPE, 130 for SIGINT), no traceback."""
    try:
        status = run(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that flush succeeds.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        print("perception-llm: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    return status


def run(argv: Sequence[str] | None) -> int:
    # argparse reports a subcommand's unknown option from the top parser, which pointed at
    # `perception-llm --help`, where the command's options are not listed.
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
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
