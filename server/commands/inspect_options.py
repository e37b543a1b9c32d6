"""`perception-llm parse` and `render` on the command line: options, description, examples. Next to
`server/commands/inspect.py`, which runs them; light on purpose (argparse only), so `--help` and a
usage error import this and not the command's dependencies."""

from __future__ import annotations

import argparse

from server.commands.command import Command


def add_parse_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", help="a messages list or a chat-completions body (JSON); - for stdin"
    )
    parser.add_argument("--pretty", action="store_true", help="a readable summary instead of JSON")


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a chat-completions body or messages list (JSON); - for stdin")
    parser.add_argument("--prompt", help="template name (default: the body's `prompt` or setting)")


PARSE = Command(
    runs="server.commands.inspect:parse",
    add_arguments=add_parse_arguments,
    examples="""\
examples:
  perception-llm parse server/samples/raven0-documented.json --pretty
  cat request.json | perception-llm parse -
""",
)
RENDER = Command(
    runs="server.commands.inspect:render",
    add_arguments=add_render_arguments,
    examples="""\
examples:
  perception-llm render server/samples/raven0-documented.json --prompt minimal
""",
)
