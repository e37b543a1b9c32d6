"""`perception-llm calls` on the command line: options, description, examples. Next to
`server/commands/calls.py`, which runs it; light on purpose (argparse only), so `--help` and a
usage error import this and not the command's dependencies."""

from __future__ import annotations

import argparse

from server.commands.command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "show", "export", "replay", "stats", "delete"])
    parser.add_argument(
        "target", nargs="?", help="a conversation id (list/export/replay) or call id"
    )
    parser.add_argument("--db", help="capture database URL (default: PERCEPTION_LLM_CAPTURE)")
    parser.add_argument("--limit", type=int, default=50, help="most rows to list")
    parser.add_argument("--as", dest="form", choices=["scenario", "fixture"], default="scenario")
    parser.add_argument("--out", help="write the export to this file instead of stdout")
    parser.add_argument("--prompts", default="default,minimal", help="replay: template names")
    parser.add_argument("--url", help="replay: an endpoint's base_url (default: in-process)")
    parser.add_argument("--api-key", help="replay: Bearer key for --url")
    parser.add_argument("--model", help="replay: model name to send")
    parser.add_argument(
        "--by",
        choices=["template", "model", "replica"],
        default="template",
        help="stats: compare arms by",
    )
    parser.add_argument("--since", help="stats: only calls since 7d, 24h, 30m or a date")
    parser.add_argument("--json", action="store_true", help="stats: print JSON")
    parser.add_argument(
        "--older-than", type=float, metavar="DAYS", help="delete: every call older than this"
    )


CALLS = Command(
    runs="server.commands.calls:calls",
    add_arguments=add_arguments,
    description=(
        "Read the capture database (PERCEPTION_LLM_CAPTURE, or --db). `list` shows "
        "conversations (or one conversation's calls); `show` one call; `export` turns a "
        "conversation's latest call into a simulate scenario or a parser fixture; `replay` "
        "runs that scenario through templates like `compare`; `stats --by template` compares "
        "the arms of an A/B split (PERCEPTION_LLM_PROMPT_SPLIT) with 95 % intervals; `delete` "
        "removes a conversation's calls (or, with --older-than DAYS, every older call)."
    ),
    examples="""\
examples:
  perception-llm calls list                     # conversations, newest first
  perception-llm calls list CONVERSATION_ID     # its calls: #12 ...
  perception-llm calls show 12                  # one call, everything recorded ('#12' too)
  perception-llm calls export CONVERSATION_ID --as scenario --out my-call.json
  perception-llm calls replay CONVERSATION_ID --prompts default,minimal
  perception-llm calls stats --by template --since 7d   # the arms of an A/B split
""",
)
