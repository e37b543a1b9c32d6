"""Worst-case parse + render time per MB over a generated adversarial corpus.

Every shape that made an earlier parser backtrack (a `<` followed by whitespace, thousands of
opening tags, nested unclosed tags, repeated closing tags, long attribute runs) is generated at
0.25, 0.5, 1, 2 and 4 MB, placed in every field type (system, user, assistant, tool, text content
parts), cut into messages no longer than the default per-message limit. Issue 22 added the
shapes of Tavus' user-role layout (perception-only user messages, the
`<additional_system_instructions>` wrapper, rule lines) and short-sentence system text cut into
16k-character messages, the shape that cost 640-675 ms/MB in instruction classification. For
each size the benchmark prints the slowest shape's time and its time per MB (with `--all`,
every shape's worst role): linear means the per-MB figure stays flat as the size grows. Target:
<= 50 ms per MB on the reference 2-core machine.

Run: .venv/bin/python benchmarks/adversarial_parse.py [--sizes 0.25,0.5,1,2,4] [--repeats 3] [--all]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import quick

from perception import parse_messages
from prompts.render import render_prompt
from prompts.templates import TemplateLibrary

MESSAGE_CHARS = 200_000  # the default PERCEPTION_LLM_MAX_MESSAGE_CHARS


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda size: (unit * (size // len(unit) + 1))[:size]


SHAPES: dict[str, Callable[[int], str]] = {
    "< then spaces": lambda size: "<" + " " * (size - 1),
    "< then newlines": lambda size: "<" + "\n" * (size - 1),
    "<user_a> repeated": _repeat("<user_a>"),
    "nested unclosed, distinct names": lambda size: "".join(
        f"<user_x{i}>" for i in range(size // 10)
    )[:size],
    "closing tags repeated": _repeat("</user_emotions>"),
    "open/close pairs with spaces": _repeat("< / user_screen >< user_screen >"),
    "long attribute run, no >": lambda size: "<user_a " + "x=1 " * (size // 4),
    "< / user_ fragments": _repeat("< / user_"),
    "<| tokens and brackets": _repeat("<|im_start|>[INST]<<SYS>>⟦"),
    "USER_SPEECH: then spaces": lambda size: "USER_SPEECH:" + " " * size + "VISUAL_SCENE" * 100,
    "tags in a preamble-like line": _repeat(
        "see the <user_screen></user_screen> tag and <user_a> "
    ),
    # Issue 22: Tavus' second layout and instruction classification.
    "short sentences": _repeat("Be kind. "),
    "one-letter sentences": _repeat("a.\n"),
    "Tavus rule sentences": _repeat("Reply in short sentences. "),
    "rule look-alikes": _repeat("I respond in kind. "),
    "perception blocks": _repeat("<user_emotions>\nCalm.\n</user_emotions>\n"),
    "wrapped perception": _repeat(
        "<additional_system_instructions><user_appearance>\nAn adult.\n</user_appearance>"
        "</additional_system_instructions>"
    ),
    "wrapped rules": _repeat(
        "<additional_system_instructions>respond in english</additional_system_instructions>"
    ),
    "wrapper tags repeated": _repeat("<additional_system_instructions>"),
}
# Shapes also cut into 16k-character messages (the shape issue 23 measured: 250 system messages
# of 16k characters of short sentences): many messages, each classified on its own.
SMALL_MESSAGE_CHARS = 16_000
SMALL_MESSAGE_SHAPES = {
    "short sentences",
    "one-letter sentences",
    "Tavus rule sentences",
    "rule look-alikes",
    "perception blocks",
    "wrapped perception",
    "wrapped rules",
}
ROLES = ["system", "user", "assistant", "tool", "parts"]


def messages_for(text: str, role: str, size: int = MESSAGE_CHARS) -> list[dict[str, Any]]:
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    messages: list[dict[str, Any]] = []
    for chunk in chunks:
        if role == "parts":
            content: Any = [{"type": "text", "text": chunk}, {"type": "text", "text": chunk[:64]}]
            messages.append({"role": "system", "content": content})
        elif role == "tool":
            messages.append({"role": "tool", "tool_call_id": "call_1", "content": chunk})
        else:
            messages.append({"role": role, "content": chunk})
    messages.append({"role": "user", "content": "hi"})
    return messages


def time_once(messages: list[dict[str, Any]], template: Any) -> float:
    start = time.perf_counter()
    render_prompt(parse_messages(messages), messages, template)
    return time.perf_counter() - start


def cases() -> list[tuple[str, Callable[[int], str], int]]:
    found = [(shape, make, MESSAGE_CHARS) for shape, make in SHAPES.items()]
    found += [
        (f"{shape} (16k messages)", SHAPES[shape], SMALL_MESSAGE_CHARS)
        for shape in SHAPES
        if shape in SMALL_MESSAGE_SHAPES
    ]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.25,0.5,1,2,4", help="body sizes in MB")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (the best is kept)")
    parser.add_argument("--all", action="store_true", help="print every shape's worst role")
    args = quick.parse_args(parser, sizes="0.25", repeats=1)
    template = TemplateLibrary().get("default")
    print(f"{'MB':>5}  {'worst ms':>9}  {'ms/MB':>7}  worst case")
    for size_mb in (float(s) for s in args.sizes.split(",")):
        size = int(size_mb * 1024 * 1024)
        worst = (0.0, "")
        for shape, make, message_chars in cases():
            text = make(size)
            shape_worst = (0.0, "")
            for role in ROLES:
                messages = messages_for(text, role, message_chars)
                best = min(time_once(messages, template) for _ in range(args.repeats))
                shape_worst = max(shape_worst, (best, f"{shape} in {role}"))
            if args.all:
                ms = shape_worst[0] * 1000
                print(f"{size_mb:>5}  {ms:>9.1f}  {ms / size_mb:>7.1f}  {shape_worst[1]}")
            worst = max(worst, shape_worst)
        print(
            f"{size_mb:>5}  {worst[0] * 1000:>9.1f}  {worst[0] * 1000 / size_mb:>7.1f}  {worst[1]}"
            + ("   <- slowest" if args.all else "")
        )


if __name__ == "__main__":
    main()
