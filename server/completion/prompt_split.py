"""A/B splits of prompt templates in production (`PERCEPTION_LLM_PROMPT_SPLIT`, issue 25).

`default=50,minimal=50` gives each conversation one template for its whole life: the arm is a
pure function of the conversation id — SHA-256, not Python's `hash()`, which is salted per
process — so every replica and every restart puts a conversation in the same arm. A request
without a conversation id gets the `PERCEPTION_LLM_PROMPT` default (there is nothing to keep it
stable by). Weights are relative integers (`a=1,b=3` is a quarter/three quarters).
"""

from __future__ import annotations

import hashlib
import re

Split = tuple[tuple[str, int], ...]

_ARM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}=\d{1,6}")


class SplitError(ValueError):
    """A split setting that cannot be used; the message says what it should look like."""


def parse_split(text: str) -> Split:
    """`"default=50,minimal=50"` → `(("default", 50), ("minimal", 50))`; empty → `()`."""
    arms: list[tuple[str, int]] = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        if not _ARM.fullmatch(part):
            raise SplitError(f"{part!r} is not TEMPLATE=WEIGHT (e.g. default=50,minimal=50)")
        name, weight = part.split("=")
        if any(name == seen for seen, _ in arms):
            raise SplitError(f"template {name!r} is listed twice")
        arms.append((name, int(weight)))
    if arms and sum(weight for _, weight in arms) == 0:
        raise SplitError("the weights add up to 0")
    return tuple(arms)


def split_point(conversation_id: str) -> float:
    """Where a conversation falls in [0, 1): the first 8 bytes of SHA-256 of its id."""
    digest = hashlib.sha256(conversation_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_template(split: Split, conversation_id: str | None) -> str | None:
    """The arm a conversation belongs to, or None without a split or a conversation id."""
    if not split or not conversation_id:
        return None
    total = sum(weight for _, weight in split)
    point = split_point(conversation_id) * total
    reached = 0
    for name, weight in split:
        reached += weight
        if point < reached:
            return name
    return split[-1][0]  # floating point at the very top of the range
