"""The README's fenced blocks, read for tests/test_readme.py: pure functions, no I/O.

The conventions (also in the README's Development section):

- Every fenced block has a language: `sh` (commands, run one by one), `python` (run as a
  script), `json` (parsed; a scenario is validated), `yaml` (parsed; an eval suite, or a part
  of one, is validated), `jinja` (a template: loaded and rendered), or `text` (not code:
  layouts, synopses, shown output).
- `<!-- not-run: reason -->` on the line directly before a block's opening fence: the block
  cannot run here (Docker, systemd, hosted providers...). tests/test_readme.py lists them all.
- `<!-- output -->` on the line directly before a `text` block: what the block before it prints
  on stdout. A line `...` in it stands for any number of lines. Volatile values are normalised
  in both texts before comparing (`normalise`), never skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RUNNABLE = ("sh", "python", "json", "yaml", "jinja")
LANGUAGES = (*RUNNABLE, "text")
NOT_RUN = re.compile(r"<!-- not-run: (\S.*\S) -->")
OUTPUT_MARK = "<!-- output -->"
ELLIPSIS = "..."


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    not_run: str | None = None  # the reason, when marked
    output: str | None = None  # the shown output, when a marked `text` block follows
    is_output: bool = False  # this block is the shown output of the block before

    @property
    def title(self) -> str:
        first = next((ln for ln in self.text.splitlines() if ln.strip()), "")
        return f"line {self.line}: {self.language}: {first[:60]}"


class ReadmeFormatError(ValueError):
    pass


def read_blocks(markdown: str) -> list[Block]:
    """Every fenced block, with its mark and, for a runnable block, its shown output."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith("```") and line != line.lstrip():
            raise ReadmeFormatError(f"line {index + 1}: an indented fence is not checked")
        if not line.startswith("```"):
            index += 1
            continue
        language = line[3:].strip()
        if language not in LANGUAGES:
            raise ReadmeFormatError(
                f"line {index + 1}: a fence needs one of {', '.join(LANGUAGES)}, got {language!r}"
            )
        end = index + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise ReadmeFormatError(f"line {index + 1}: the fence is never closed")
        before = lines[index - 1].strip() if index else ""
        block = Block(index + 1, language, "\n".join(lines[index + 1 : end]) + "\n")
        marked = NOT_RUN.fullmatch(before)
        if marked:
            block.not_run = marked.group(1)
        elif before == OUTPUT_MARK:
            if language != "text" or not blocks or blocks[-1].language not in ("sh", "python"):
                raise ReadmeFormatError(
                    f"line {index + 1}: {OUTPUT_MARK} marks a text block after a sh or python one"
                )
            block.is_output = True
            blocks[-1].output = block.text
        elif before.startswith("<!--"):
            raise ReadmeFormatError(f"line {index}: unknown mark {before!r}")
        blocks.append(block)
        index = end + 1
    return blocks


def commands(script: str) -> list[str]:
    """The commands of a `sh` block: continuation lines joined, blank and comment lines left out
    (a trailing comment stays: bash ignores it)."""
    result: list[str] = []
    pending = ""
    for line in script.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        result.append(pending + line)
        pending = ""
    if pending:
        result.append(pending)
    return result


# Volatile values, each replaced by a fixed stand-in in the expected and the actual text alike.
VOLATILE = [
    (re.compile(r"\b\d+(?:\.\d+)? ms\b"), "N ms"),  # timings
    (re.compile(r"\b\d+(?:\.\d+)? s\b"), "N s"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?"), "YYYY-MM-DD hh:mm:ss"),
    (re.compile(r"\bchatcmpl-[0-9a-f]+"), "chatcmpl-ID"),
    (re.compile(r"\bcall_[0-9A-Za-z]+"), "call_ID"),
    (re.compile(r"\bsim-[0-9a-f]{12}\b"), "sim-ID"),
    (re.compile(r"(\u27e6/?perception )[0-9a-f]+"), r"\1NONCE"),
    (re.compile(r"\brun #\d+"), "run #N"),  # eval runs kept in a store
    # Aligned tables pad a column by the width of a (volatile) number before it.
    (re.compile(r" {2,}"), "  "),
]


def normalise(text: str, port: int | None = None) -> str:
    """`text` with volatile values replaced; the live server's port shown as the README's 8000."""
    if port is not None:
        text = text.replace(f"127.0.0.1:{port}", "127.0.0.1:8000")
    for pattern, stand_in in VOLATILE:
        text = pattern.sub(stand_in, text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def matches(expected: str, actual: str) -> bool:
    """Whether `actual` has `expected`'s lines, in order, a `...` line standing for any lines."""
    want, got = expected.splitlines(), actual.splitlines()

    def match(i: int, j: int) -> bool:
        while i < len(want):
            if want[i] == ELLIPSIS:
                return any(match(i + 1, k) for k in range(j, len(got) + 1))
            if j >= len(got) or want[i] != got[j]:
                return False
            i, j = i + 1, j + 1
        return j == len(got)

    return match(0, 0)
