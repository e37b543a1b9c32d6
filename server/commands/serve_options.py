"""`perception-llm serve` on the command line: options, description, examples. Next to
`server/commands/serve.py`, which runs it; light on purpose (argparse only), so `--help` and a
usage error import this and not the command's dependencies."""

from __future__ import annotations

import argparse

from server.commands.command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", help="interface to bind (default: PERCEPTION_LLM_HOST or 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, help="port (default: PERCEPTION_LLM_PORT or 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="1 only: for more cores run replicas behind deploy/nginx (README: Deploying)",
    )
    parser.add_argument(
        "--capture",
        nargs="?",
        const="",
        metavar="DB_URL",
        help="record calls (default database: sqlite:///perception-llm-calls.db)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback host without PERCEPTION_LLM_API_KEY",
    )


SERVE = Command(
    runs="server.commands.serve:serve",
    add_arguments=add_arguments,
    examples="""\
examples:
  perception-llm serve                          # http://127.0.0.1:8000/v1, offline responder
  PERCEPTION_LLM_API_KEY=change-me-to-a-long-random-key perception-llm serve --host 0.0.0.0
  perception-llm serve --capture                # record calls to ./perception-llm-calls.db
""",
)
