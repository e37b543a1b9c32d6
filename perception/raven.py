"""raven-0/raven-1 perception blocks in system messages: find them, and tell data from prose.

Tavus sends `<user_appearance>…</user_appearance> <user_emotions>…</user_emotions> …` in a
system message, but its own persona preamble also *mentions* the tags in sentences ("the user's
appearance inside the <user_appearance></user_appearance> tag"). The rule, applied per block:

- a block is an **observation** when it stands on its own: nothing but whitespace or other
  blocks between it and the start of its line, or between it and the end of its line;
- it is a **mention** (persona text, kept verbatim) when text surrounds it on its line, or when
  it is empty or a placeholder (`...`) with any text beside it.

An opening tag with no closing tag is an observation only when it starts its line; its value
runs to the next perception tag or the end of the message (never into the next message), and the
parser reports it. Removing a block can re-pair stray tags around it, so the parser repeats
extraction on the leftover until none is found: re-parsing cleaned text finds nothing new.
Like vLLM's tool parsers, the vocabulary is defined once, regexes are compiled once, and
`"<" not in text` is the fast path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# Tag name → field; any other `user_*` tag is kept under `extra` by its own name.
KNOWN_TAGS: dict[str, str] = {
    "user_appearance": "appearance",
    "user_emotions": "emotions",
    "user_screenshare": "screenshare",
    "user_screen": "screenshare",
    "user_audio_analysis": "audio",
}

# Attributes may not span lines, so removing a block can never join text into a new tag.
_OPEN_RE = re.compile(r"<(user_[a-z0-9_]+)(?:[ \t][^<>\n]*)?>", re.I)
# The common case in one match: a block closed by its own tag (backreference), checked below
# for a same-name opening tag inside it, which would make the first opening tag unclosed.
_CLOSED_BLOCK_RE = re.compile(r"<(user_[a-z0-9_]+)(?:[ \t][^<>\n]*)?>(.*?)</\s*\1\s*>", re.I | re.S)
_TAG_BOUNDARY_RE = re.compile(r"<\s*/?\s*user_", re.I)
UNPARSED_KEY = "unparsed"  # `extra` key for text after the first observation outside blocks
_PLACEHOLDERS = frozenset({"", "...", "…", "…."})


@dataclass(frozen=True, slots=True)
class Block:
    name: str  # lower-cased tag name, e.g. "user_emotions"
    start: int  # span of the whole block in the message text
    end: int
    value: str  # raw text between the tags
    closed: bool


@lru_cache(maxsize=256)
def _reopen_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"<{re.escape(name)}(?:[ \t][^<>\n]*)?>", re.I)


def find_blocks(text: str) -> list[Block]:
    """Every perception block in `text`, outermost first, never overlapping."""
    if "<" not in text:
        return []
    # Fast path: well-formed blocks only, with no opening tag left over between them.
    blocks: list[Block] = []
    gap_start = 0
    for match in _CLOSED_BLOCK_RE.finditer(text):
        name, value = match.group(1).lower(), match.group(2)
        start = match.start()
        # str.find before the regex: gaps between Tavus' blocks are almost always whitespace.
        if (text.find("<", gap_start, start) != -1 and _OPEN_RE.search(text, gap_start, start)) or (
            "<" in value and _reopen_re(name).search(value)
        ):
            return _scan_blocks(text)
        gap_start = match.end()
        blocks.append(Block(name, start, gap_start, value, True))
    if text.find("<", gap_start) != -1 and _OPEN_RE.search(text, gap_start):
        return _scan_blocks(text)
    return blocks


def _scan_blocks(text: str) -> list[Block]:
    """The general scanner: one opening tag at a time, handling unclosed tags."""
    blocks: list[Block] = []
    position = 0
    while True:
        opening = _OPEN_RE.search(text, position)
        if opening is None:
            return blocks
        name = opening.group(1).lower()
        closed = _CLOSED_BLOCK_RE.match(text, opening.start())
        if closed is not None and not (
            "<" in closed.group(2) and _reopen_re(name).search(closed.group(2))
        ):
            blocks.append(Block(name, closed.start(), closed.end(), closed.group(2), closed=True))
            position = closed.end()
            continue
        # Unclosed: the value stops at the next perception tag of any kind.
        boundary = _TAG_BOUNDARY_RE.search(text, opening.end())
        end = boundary.start() if boundary is not None else len(text)
        blocks.append(Block(name, opening.start(), end, text[opening.end() : end], closed=False))
        position = end


def _has_text(segment: str) -> bool:
    return bool(segment.strip())


def split_observations(text: str, blocks: list[Block]) -> tuple[list[Block], list[Block]]:
    """Partition `blocks` into (observations, mentions) by the rule in the module docstring."""
    if not remove_blocks(text, blocks):
        return blocks, []  # only blocks and whitespace: the usual Tavus perception message
    observations: list[Block] = []
    mentions: list[Block] = []
    for i, block in enumerate(blocks):
        line_start = text.rfind("\n", 0, block.start) + 1
        previous_end = blocks[i - 1].end if i > 0 else 0
        before = text[max(line_start, previous_end) : block.start]
        line_end = text.find("\n", block.end)
        line_end = len(text) if line_end == -1 else line_end
        next_start = blocks[i + 1].start if i + 1 < len(blocks) else len(text)
        after = text[block.end : min(line_end, next_start)] if block.closed else ""
        text_before, text_after = _has_text(before), _has_text(after)
        placeholder = block.value.strip() in _PLACEHOLDERS
        if not block.closed:
            is_mention = text_before
        else:
            is_mention = (text_before and text_after) or (
                placeholder and (text_before or text_after)
            )
        (mentions if is_mention else observations).append(block)
    return observations, mentions


def remove_blocks(text: str, blocks: list[Block], start: int = 0) -> str:
    """`text[start:]` without `blocks` (given in order), surrounding whitespace trimmed."""
    pieces = []
    position = start
    for block in blocks:
        pieces.append(text[position : block.start])
        position = block.end
    pieces.append(text[position:])
    return "".join(pieces).strip()
