"""`perception-llm simulate` and `compare` on the command line: options, description,
examples. Next to `server/commands/emulate.py`, which runs them; light on purpose (argparse
only), so `--help` and a usage error import this and not the command's dependencies."""

from __future__ import annotations

import argparse

from server.commands.command import Command


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", required=True, help="the persona's base_url, e.g. http://127.0.0.1:8000/v1"
    )
    parser.add_argument("--api-key", help="the persona's api_key (sent as a Bearer token)")
    parser.add_argument(
        "--scenario", default="raven-cooking", help="shipped scenario name or a JSON file"
    )
    parser.add_argument("--model", help="model name to send (default: the scenario's, or echo)")
    parser.add_argument(
        "--layout",
        choices=["system", "user"],
        help="where raven perception and Tavus' rules go (default: the scenario's): system "
        "messages, or user-role messages as some Tavus models receive them",
    )
    parser.add_argument(
        "--speculative",
        action="store_true",
        help="also send overlapping partial transcripts per turn, abandoned mid-stream",
    )
    parser.add_argument(
        "--header", action="append", default=[], metavar="K=V", help="persona header"
    )
    parser.add_argument("--query", action="append", default=[], metavar="K=V", help="default query")
    parser.add_argument("--json", action="store_true", help="print a machine-readable report")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="names or JSON files")
    parser.add_argument("--prompts", required=True, help="comma-separated template names")
    parser.add_argument("--url", help="an endpoint's base_url (default: in-process server)")
    parser.add_argument("--api-key", help="Bearer key for --url")
    parser.add_argument("--model", help="model name to send (default: the scenario's, or echo)")
    parser.add_argument("--out", help="also write the comparison as Markdown to this file")


SIMULATE = Command(
    runs="server.commands.emulate:run_simulate",
    add_arguments=add_simulate_arguments,
    description=(
        "Send a scenario's turns to BASE_URL/chat/completions exactly as Tavus does (openai "
        "SDK, stream: true, Bearer key, conversation-id header), print each reply as it "
        "streams with time to first token, then a conformance report. Exit status 0: the "
        "endpoint meets the contract; 1: it breaks it; 2: it could not be tested."
    ),
    examples="""\
examples:
  perception-llm simulate --url http://127.0.0.1:8000/v1 --scenario raven-cooking
  perception-llm simulate --url http://127.0.0.1:8000/v1 --scenario raven1-sarcasm --speculative
  perception-llm simulate --url http://127.0.0.1:8000/v1 --json > report.json
""",
)
COMPARE = Command(
    runs="server.commands.emulate:run_compare",
    add_arguments=add_compare_arguments,
    description=(
        "Play each scenario once per template (the `prompt` body field chooses it) and show "
        "replies side by side with prompt tokens and time to first token. Without --url, "
        "this server runs in-process with the configured response model."
    ),
    examples="""\
examples:
  perception-llm compare raven-cooking --prompts default,minimal
  perception-llm compare raven-cooking basic-story --prompts default,minimal --out report.md
  perception-llm compare weather-tools --prompts default --url http://127.0.0.1:8000/v1
""",
)
