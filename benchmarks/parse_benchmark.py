"""Median time to parse a 200-message raven conversation with a perception message every turn.

Run: .venv/bin/python benchmarks/parse_benchmark.py   (target: median under 1 ms on one core)
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from perception import parse_messages

PREAMBLE = (
    "You are Maya, a cooking coach. You will receive the user's appearance inside the "
    "<user_appearance></user_appearance> tag and their emotions inside the "
    "<user_emotions></user_emotions> tag. Use them only when relevant."
)


def conversation(length: int = 200) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": PREAMBLE}]
    turn = 0
    while len(messages) < length:
        messages.append(
            {
                "role": "system",
                "content": (
                    f"<user_appearance>An adult with glasses in a kitchen, turn {turn}."
                    f"</user_appearance> <user_emotions>Calm, curious ({turn}).</user_emotions> "
                    "<user_screenshare>A pancake recipe, step 3 highlighted.</user_screenshare>"
                ),
            }
        )
        messages.append({"role": "user", "content": f"What do I do at step {turn}?"})
        messages.append({"role": "assistant", "content": f"At step {turn}, whisk the eggs."})
        turn += 1
    return messages[:length]


def main(repeats: int = 2000) -> None:
    messages = conversation()
    for _ in range(200):  # warm caches
        parse_messages(messages)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        parse_messages(messages)
        timings.append(time.perf_counter() - start)
    timings.sort()
    result = parse_messages(messages)
    print(f"messages: {len(messages)}, observations: {len(result.observations)}")
    print(f"median: {statistics.median(timings) * 1000:.3f} ms")
    print(f"p99:    {timings[int(len(timings) * 0.99)] * 1000:.3f} ms")


if __name__ == "__main__":
    main()
