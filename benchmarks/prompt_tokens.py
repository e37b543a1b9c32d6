"""Prompt tokens sent upstream for a 30-turn raven conversation, per template.

Run: .venv/bin/python benchmarks/prompt_tokens.py   (target: default under half of passthrough)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quick
from conversations import raven_conversation

from perception import parse_messages
from prompts.render import render_prompt
from prompts.templates import TemplateLibrary


def main(turns: int = 30) -> None:
    messages = raven_conversation(turns)
    conversation = parse_messages(messages)
    library = TemplateLibrary()
    baseline = None
    print(f"{turns}-turn raven conversation, {len(messages)} messages, perception every turn")
    for name in ["passthrough", "default", "minimal"]:
        rendered = render_prompt(conversation, messages, library.get(name))
        baseline = baseline or rendered.prompt_tokens
        share = rendered.prompt_tokens / baseline
        print(f"{name:12} {rendered.prompt_tokens:6d} tokens  ({share:.0%} of passthrough)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=30, help="turns in the conversation")
    # Exact and instant already: --quick is accepted (the README test passes it) and changes
    # nothing, so the numbers it prints are the README's.
    main(quick.parse_args(parser).turns)
