"""`perception-llm eval` on the command line: options, description, examples. Next to
`server/commands/evaluate.py`, which runs it; light on purpose (argparse only), so `--help` and a
usage error import this and not the command's dependencies."""

from __future__ import annotations

import argparse

from server.commands.command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", metavar="SUITE", help="suite file or shipped name")
    parser.add_argument("--url", help="an endpoint's base_url (default: this server in process)")
    parser.add_argument("--api-key", help="Bearer key for --url")
    parser.add_argument("--models", help="comma-separated models (default: the suite's)")
    parser.add_argument("--templates", help="comma-separated templates (default: the suite's)")
    parser.add_argument(
        "--from-capture",
        type=int,
        metavar="N",
        help="also replay the last N captured conversations",
    )
    parser.add_argument("--db", help="store for runs and the cache (default: capture database)")
    parser.add_argument("-j", "--concurrency", type=int, default=4, help="cells at once")
    parser.add_argument("--no-cache", action="store_true", help="resample every reply")
    parser.add_argument(
        "--max-calls", type=int, default=500, help="hard cap on model + judge calls (retries too)"
    )
    parser.add_argument("--attempts", type=int, default=4, help="tries per call (429/5xx)")
    parser.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")


EVAL = Command(
    runs="server.commands.evaluate:evaluate",
    add_arguments=add_arguments,
    description=(
        "Run SUITE (a JSON or YAML file, or a shipped example such as perception-basics): "
        "every test x template x model x sample gets a reply, checked by its assertions. "
        "Prints the matrix with 95 % Wilson intervals, the winner per assertion and the "
        "failing replies; keeps the run in the capture database (else a local SQLite file) "
        "for the playground. Exit 0: every template reached the threshold; 1: one did not; "
        "2: a bad suite, or errored cells (a model or judge outage)."
    ),
    examples="""\
examples:
  perception-llm eval perception-basics          # the shipped example, offline
  perception-llm eval suite.yaml -j 8 --json results.json --html results.html
  perception-llm eval --from-capture 20 --templates default,minimal
  perception-llm eval suite.yaml --url http://127.0.0.1:8000/v1 --models gpt-4o-mini
""",
)
