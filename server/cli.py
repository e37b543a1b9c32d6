"""The `perception-llm` command line: the top-level parser, dispatch, and exit statuses.

Each command lives in `server/commands/`: its options, description and examples (a `Command`)
in `<module>_options.py`, next to `<module>.py`, which runs it and is imported only then, so
`--help`, usage errors and `parse` do not pay for uvicorn, the app or the openai SDK. User
errors print one clear line on stderr and exit with status 2, never a traceback; so do mistakes
in the arguments themselves.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from server.commands import (
    calls_options,
    emulate_options,
    evaluate_options,
    inspect_options,
    serve_options,
)
from server.commands.command import Command

EXAMPLES = """\
examples:
  perception-llm serve                         # http://127.0.0.1:8000/v1, offline responder
  PERCEPTION_LLM_API_KEY=change-me-to-a-long-random-key perception-llm serve --host 0.0.0.0
  perception-llm parse request.json --pretty   # what was perceived in a Tavus request
  perception-llm render request.json --prompt minimal   # what the model would be sent
  perception-llm simulate --url http://127.0.0.1:8000/v1 --scenario raven1-sarcasm --speculative
  perception-llm compare raven-cooking basic-story --prompts default,minimal --out report.md
  cat request.json | perception-llm parse -
  perception-llm serve --capture               # record calls; then: perception-llm calls list
  perception-llm calls export CONVERSATION_ID --as scenario --out my-call.json
  perception-llm eval perception-basics        # prompt experiments: assertions, pass rates
"""

# command → (its Command, its line in `perception-llm --help`), in the order that help lists
# them. The options, description and examples are the command's own, in its options module.
COMMANDS: dict[str, tuple[Command, str]] = {
    "serve": (serve_options.SERVE, "run the OpenAI-compatible server"),
    "render": (
        inspect_options.RENDER,
        "print the messages the response model would get for a request",
    ),
    "simulate": (
        emulate_options.SIMULATE,
        "play a scenario against an endpoint as Tavus would, and check its conformance",
    ),
    "compare": (
        emulate_options.COMPARE,
        "run scenarios through several prompt templates and compare the replies",
    ),
    "calls": (
        calls_options.CALLS,
        "captured calls (PERCEPTION_LLM_CAPTURE): list, show, export, replay, stats, delete",
    ),
    "eval": (
        evaluate_options.EVAL,
        "run an eval suite: assertions over templates x models, pass rates, exit status",
    ),
    "parse": (inspect_options.PARSE, "print the perception parsed from a request"),
}


def command(name: str) -> Command:
    return COMMANDS[name][0]


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
    for name, (spec, line) in COMMANDS.items():
        subparser = subparsers.add_parser(
            name,
            help=line,
            description=spec.description,
            epilog=spec.examples,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # An unknown option is reported by the command's parser, naming its --help.
        subparser.set_defaults(command_parser=subparser)
        spec.add_arguments(subparser)
    return parser


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

    try:
        status: int = command(args.command).run(args)
    except UsageError as error:
        print(f"perception-llm: error: {error}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
