"""Keep a rendered prompt within the context budget by dropping the oldest turns.

Turns are dropped in units that keep the conversation valid for any OpenAI-compatible server:
an assistant message with `tool_calls` goes together with the `tool` results that answer it (a
lone `tool` message is rejected by the API). Persona system text, the greeting (an assistant turn
before any user turn: Tavus sends the persona's `custom_greeting` that way) and the last user turn
(with everything after it) are never dropped.
"""

from __future__ import annotations

from typing import Any

from perception import INSTRUCTION_ROLES
from prompts.tokens import estimate_message_tokens


def droppable_units(turns: list[Any], keep_from: int) -> list[list[int]]:
    """Indexes of `turns[:keep_from]` grouped into units, oldest first."""
    units: list[list[int]] = []
    seen_user = False
    for index in range(keep_from):
        message = turns[index]
        role = message.get("role") if isinstance(message, dict) else None
        if isinstance(role, str) and role in INSTRUCTION_ROLES:
            continue  # persona text is never dropped, wherever it sits
        if role == "assistant" and not seen_user:
            continue  # the greeting opens the call: older user turns go first
        seen_user = seen_user or role == "user"
        if role == "tool" and units and _opens_tool_calls(turns[units[-1][0]]):
            units[-1].append(index)
        else:
            units.append([index])
    return units


def _opens_tool_calls(message: Any) -> bool:
    return isinstance(message, dict) and bool(message.get("tool_calls"))


def last_user_index(turns: list[Any]) -> int | None:
    for index in range(len(turns) - 1, -1, -1):
        message = turns[index]
        if isinstance(message, dict) and message.get("role") == "user":
            return index
    return None


def drop_oldest_turns(
    turns: list[Any], total: int, budget_tokens: int
) -> tuple[list[Any], int, int]:
    """`turns` without the oldest units that keep the prompt over budget, how many units were
    dropped, and the prompt's tokens after it. `total` is the whole prompt's estimate so far
    (each message is estimated once per request; only dropped units are estimated again)."""
    if total <= budget_tokens:
        return turns, 0, total
    keep_from = last_user_index(turns)
    if keep_from is None:
        keep_from = len(turns) - 1  # no user turn: at least keep the newest message
    dropped: set[int] = set()
    units_dropped = 0
    for unit in droppable_units(turns, keep_from):
        if total <= budget_tokens:
            break
        total -= estimate_message_tokens([turns[i] for i in unit])
        dropped.update(unit)
        units_dropped += 1
    kept = [message for index, message in enumerate(turns) if index not in dropped]
    return kept, units_dropped, total
