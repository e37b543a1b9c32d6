"""Tavus-shaped raven conversations of any length, for the benchmarks."""

from __future__ import annotations

from typing import Any

PREAMBLE = (
    "You are Maya, a cooking coach on a live video call. You will receive the user's appearance "
    "inside the <user_appearance></user_appearance> tag, their emotions inside the "
    "<user_emotions></user_emotions> tag and their screen inside the "
    "<user_screenshare></user_screenshare> tag. Use them only when relevant. Keep replies short."
)
EMOTIONS = ["Calm, curious", "Focused, slightly tense", "Frustrated, frowning", "Relieved, smiling"]


def raven_conversation(turns: int) -> list[dict[str, Any]]:
    """Persona + greeting, then per turn: perception message, user turn, assistant reply."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": PREAMBLE},
        {"role": "assistant", "content": "Hi! What are we cooking today?"},
    ]
    for turn in range(turns):
        messages.append(
            {
                "role": "system",
                "content": (
                    "<user_appearance>An adult with glasses and a grey apron in a bright kitchen, "
                    "standing at the counter.</user_appearance> "
                    f"<user_emotions>{EMOTIONS[(turn // 5) % len(EMOTIONS)]}.</user_emotions> "
                    "<user_screenshare>A recipe page for fluffy pancakes; step 3 (fold the egg "
                    "whites into the batter) is highlighted.</user_screenshare>"
                ),
            }
        )
        messages.append({"role": "user", "content": f"Okay, what do I do at step {turn}?"})
        messages.append(
            {
                "role": "assistant",
                "content": f"At step {turn}, fold gently so the batter stays airy.",
            }
        )
    messages.pop()  # Tavus' requests end on the user turn
    return messages
