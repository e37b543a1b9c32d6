"""Tavus-shaped raven conversations of any length, for the benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Tavus' stored first system message as its docs publish it (perception preamble, style rules,
# language rule, then the persona), with our own persona in place of the example's.
PREAMBLE = json.loads((ROOT / "tests/fixtures/tavus/preambles.json").read_text())[
    "raven_stored"
].replace(
    "Chill guy  You are talking to a user about AI technology.",
    "You are Maya, a cooking coach on a live video call. Keep replies short.",
)
EMOTIONS = ["Calm, curious", "Focused, slightly tense", "Frustrated, frowning", "Relieved, smiling"]


WRAPPER = "additional_system_instructions"


def raven_conversation(turns: int, layout: str = "system") -> list[dict[str, Any]]:
    """Persona + greeting, then per turn: perception message, user turn, assistant reply.

    `layout="user"`: the perception message is a perception-only *user* message, inside
    `<additional_system_instructions>` every other turn (Tavus' second layout, issue 22)."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": PREAMBLE},
        {"role": "assistant", "content": "Hi! What are we cooking today?"},
    ]
    for turn in range(turns):
        perception = (
            "<user_appearance>An adult with glasses and a grey apron in a bright kitchen, "
            "standing at the counter.</user_appearance> "
            f"<user_emotions>{EMOTIONS[(turn // 5) % len(EMOTIONS)]}.</user_emotions> "
            "<user_screenshare>A recipe page for fluffy pancakes; step 3 (fold the egg "
            "whites into the batter) is highlighted.</user_screenshare>"
        )
        if layout == "user":
            wrapped = turn % 2 == 0
            perception = f"<{WRAPPER}>{perception}</{WRAPPER}>" if wrapped else perception
            messages.append({"role": "user", "content": perception})
        else:
            messages.append({"role": "system", "content": perception})
        messages.append({"role": "user", "content": f"Okay, what do I do at step {turn}?"})
        messages.append(
            {
                "role": "assistant",
                "content": f"At step {turn}, fold gently so the batter stays airy.",
            }
        )
    messages.pop()  # Tavus' requests end on the user turn
    return messages
