"""raven-0/raven-1 perception in system messages: where untrusted data starts, and its blocks.

Tavus sends perception as `<user_appearance>…</user_appearance> <user_emotions>…</user_emotions> …`
in a system message of its own, values wrapped in newlines. Its own perception preamble, part of
the persona's system text, *mentions* the same tags in prose: as empty pairs ("the user's
appearance inside the <user_appearance></user_appearance> tag") and as bare opening tags inside
sentences ("use only the content within the <user_appearance> and <user_emotions> tags"); see
the fixtures `tavus-raven-preamble*.json` for the published text.

Perception values are user-controlled (a screen share shows whatever is on the screen), so the
question is never "which tags are data" but "where does untrusted text start". The rule
(issue 22):

1. A message whose first non-blank text is a tag is a perception message: all of it is data.
2. Otherwise the message is persona text, byte for byte, unless a *known* tag (`KNOWN_TAGS`)
   outside Tavus' recognised perception preambles (`perception.instructions.preamble_spans`)
   is one prose cannot explain: a tag that starts its line; a closing tag that does not close
   an empty pair (so it closes a value); an opening tag while one of the same name is still
   open; or a second empty pair of the same name. Then the data starts at the first *complete
   known block* outside the preambles (an opening known tag with a closing tag of its name
   somewhere after it): the persona text before it stays, byte for byte.
3. Unknown `user_*` tags and unpaired tags in persona text are reported (`unpaired_tag`) and
   change nothing, so an app's context ending in `\n<user_profile_end>` after the preamble
   keeps the whole persona in the system role.

Why this holds against a value crafted to look like prose: Tavus' own opening tag precedes the
value and its closing tag follows it, so Tavus' block is complete and starts no later than the
value; and some known tag at or after Tavus' opening tag is always unexplainable (the old rule's
argument, which ignoring the preamble's and unknown tags cannot break: skipping a tag only
makes the text between two considered tags longer, so a pair looks less empty). Every byte of
the value therefore lands in the data part. An empty pair counts as a complete block for the
same reason (`<user_screen>…</user_screen>` may be the head of a value that goes on); when the
data starts at one, a prose mention became data (reported as `mention_demoted`, the safe
direction). A preamble is recognised by its opening sentence and last rule on one line, and
Tavus wraps values in newlines, so a value cannot stretch a preamble over Tavus' block. Past
MAX_TAGS tags with no complete block in reach, the data starts at the first tag outside the
preambles (bounded work, the safe direction).

Inside the data part, an opening tag's value runs to the next closing tag of the same name, or,
when another opening tag of that name or no closing tag comes first, to the next tag of any kind
(reported as unclosed). A closing tag straight after a closed block of its name extends that
block: the screen text began with `</user_screenshare>` (reported as `hostile_closing_tag`). Text
in the data part outside any block is kept as data too, never as persona text.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import NamedTuple

from perception.fields import tag_fields
from perception.instructions import preamble_spans
from perception.tags import Tag, scan_tags

# Tag name → field (from the registry); any other `user_*` tag is kept under `extra` by its name.
KNOWN_TAGS: dict[str, str] = tag_fields()
# A Tavus perception message holds a handful of tags and its preamble about ten. Past this many
# in one message the rest is kept as unparsed data: the work per message stays bounded.
MAX_TAGS = 256
_PLACEHOLDERS = frozenset({"", "...", "…", "…."})


class Block(NamedTuple):
    name: str  # lower-cased tag name, e.g. "user_emotions"
    start: int  # span of the whole block in the message text
    end: int
    value_start: int  # where the value begins (just after the opening tag)
    value: str  # raw text between the tags
    closed: bool
    stray_closers: int  # closing tags of the same name that extended the block


@dataclass(frozen=True, slots=True)
class RavenMessage:
    """A system message split at the trust boundary."""

    persona: str  # trusted text before the boundary, right-stripped ("" when it is all data)
    has_data: bool  # False: no perception here, the message is persona text as it was
    blocks: list[Block]
    leftover: str  # data-part text outside blocks, stripped
    stray_closers: int  # closing tags that closed nothing
    demoted_mentions: bool  # prose with tag mentions was pulled into the data part
    too_many_tags: bool  # past MAX_TAGS: the rest is in `leftover`
    unpaired_tags: int  # unpaired or unknown tags left in the persona text


def _is_empty_pair(text: str, opening: Tag | None, closing: Tag) -> bool:
    return (
        opening is not None
        and not opening.closing
        and opening.name == closing.name
        and text[opening.end : closing.start].strip() in _PLACEHOLDERS
    )


def _unexplained_tag(text: str, tags: list[Tag]) -> int | None:
    """Index of the first tag prose cannot explain (see rule 2), or None."""
    open_names: set[str] = set()
    empty_pairs: set[str] = set()
    previous: Tag | None = None
    for index, tag in enumerate(tags):
        gap_start = previous.end if previous is not None else 0
        newline = text.rfind("\n", gap_start, tag.start)  # bounded by the previous tag: linear
        at_line_start = (previous is None or newline != -1) and not text[
            newline + 1 : tag.start
        ].strip()
        if at_line_start:
            return index
        if tag.closing:
            if not _is_empty_pair(text, previous, tag) or tag.name in empty_pairs:
                return index
            empty_pairs.add(tag.name)
            open_names.discard(tag.name)
        elif tag.name in open_names:
            return index
        else:
            open_names.add(tag.name)
        previous = tag
    return None


def _outside(spans: list[tuple[int, int]], tags: list[Tag]) -> list[bool]:
    """For each tag (in order): True when it is not inside one of the (ordered) spans."""
    result = []
    span = 0
    for tag in tags:
        while span < len(spans) and spans[span][1] <= tag.start:
            span += 1
        result.append(not (span < len(spans) and spans[span][0] <= tag.start))
    return result


def _first_complete_block(tags: list[Tag]) -> tuple[Tag, Tag] | None:
    """The first opening tag with a closing tag of its name after it, and that closing tag."""
    next_close, _ = _next_of_same_kind(tags)
    for tag, closer in zip(tags, next_close, strict=True):
        if not tag.closing and closer is not None:
            return tag, tags[closer]
    return None


def _unpaired(text: str, tags: list[Tag]) -> int:
    """How many of `tags` are not half of an empty pair (a prose mention)."""
    paired = 0
    for previous, tag in itertools.pairwise(tags):
        if tag.closing and _is_empty_pair(text, previous, tag):
            paired += 2
    return len(tags) - paired


def _next_of_same_kind(tags: list[Tag]) -> tuple[list[int | None], list[int | None]]:
    """For each tag: the index of the next closing and next opening tag with its name."""
    next_close: list[int | None] = [None] * len(tags)
    next_open: list[int | None] = [None] * len(tags)
    seen_close: dict[str, int] = {}
    seen_open: dict[str, int] = {}
    for index in range(len(tags) - 1, -1, -1):
        tag = tags[index]
        next_close[index] = seen_close.get(tag.name)
        next_open[index] = seen_open.get(tag.name)
        (seen_close if tag.closing else seen_open)[tag.name] = index
    return next_close, next_open


def split_blocks(text: str, tags: list[Tag]) -> tuple[list[Block], int]:
    """The blocks of a data part, and how many closing tags closed nothing."""
    openings, closings = tags[::2], tags[1::2]
    if len(openings) == len(closings) and all(
        not opening.closing and closing.closing and opening.name == closing.name
        for opening, closing in zip(openings, closings, strict=True)
    ):  # the usual Tavus message: well-formed blocks one after another
        return [
            Block(o.name, o.start, c.end, o.end, text[o.end : c.start], True, 0)
            for o, c in zip(openings, closings, strict=True)
        ], 0
    next_close, next_open = _next_of_same_kind(tags)
    blocks: list[Block] = []
    last_closer: int | None = None  # index of the tag that closed the newest block
    stray = 0
    index = 0
    while index < len(tags):
        tag = tags[index]
        if tag.closing:
            newest = blocks[-1] if blocks else None
            if newest is not None and last_closer == index - 1 and newest.name == tag.name:
                blocks[-1] = Block(
                    tag.name,
                    newest.start,
                    tag.end,
                    newest.value_start,
                    text[newest.value_start : tag.start],
                    True,
                    newest.stray_closers + 1,
                )
                last_closer = index
            else:
                stray += 1
            index += 1
            continue
        closer, reopen = next_close[index], next_open[index]
        if closer is not None and (reopen is None or closer < reopen):
            end_tag = tags[closer]
            blocks.append(
                Block(
                    tag.name,
                    tag.start,
                    end_tag.end,
                    tag.end,
                    text[tag.end : end_tag.start],
                    True,
                    0,
                )
            )
            last_closer = closer
            index = closer + 1
            continue
        end = tags[index + 1].start if index + 1 < len(tags) else len(text)
        blocks.append(Block(tag.name, tag.start, end, tag.end, text[tag.end : end], False, 0))
        last_closer = None
        index += 1
    return blocks, stray


# Tavus resends the whole history with every request, so all but the newest perception message
# were split a moment ago: short texts are remembered (the result is frozen and only read).
CACHED_TEXT_CHARS = 4096  # with 2,048 entries: at most ~16 MB however hostile the texts


@functools.lru_cache(maxsize=2048)
def _split_cached(text: str) -> RavenMessage | None:
    return _split(text)


def split_raven_message(text: str) -> RavenMessage | None:
    """Split a system message's text at the trust boundary; None when it holds no perception."""
    return _split_cached(text) if len(text) <= CACHED_TEXT_CHARS else _split(text)


def _split(text: str) -> RavenMessage | None:
    tags = scan_tags(text, MAX_TAGS + 1)
    if not tags:
        return None
    too_many = len(tags) > MAX_TAGS
    if too_many:
        tags = tags[:MAX_TAGS]
    demoted = False
    unpaired = 0
    if text[: tags[0].start].strip():
        outside = _outside(preamble_spans(text), tags)
        considered = [tag for tag, out in zip(tags, outside, strict=True) if out]
        known = [tag for tag in considered if tag.name in KNOWN_TAGS]
        boundary: Tag | None = None
        if _unexplained_tag(text, known) is not None:
            found = _first_complete_block(known)
            if found is not None:
                boundary = found[0]
                demoted = _is_empty_pair(text, *found)  # a prose mention became data
        if boundary is None and too_many and considered:
            boundary = considered[0]  # no complete block in reach: the old anchor, bounded
        if boundary is None:  # prose that only mentions tags, e.g. Tavus' preamble
            return RavenMessage(text, False, [], "", 0, False, False, _unpaired(text, considered))
        unpaired = _unpaired(text, [tag for tag in considered if tag.start < boundary.start])
        tags = [tag for tag in tags if tag.start >= boundary.start]
    first = tags[0]
    blocks, stray = split_blocks(text, tags)
    return RavenMessage(
        persona=text[: first.start].rstrip(),
        has_data=True,
        blocks=blocks,
        leftover=remove_blocks(text, blocks, start=first.start),
        stray_closers=stray,
        demoted_mentions=demoted,
        too_many_tags=too_many,
        unpaired_tags=unpaired,
    )


def remove_blocks(text: str, blocks: list[Block], start: int = 0) -> str:
    """`text[start:]` without `blocks` (given in order), surrounding whitespace trimmed."""
    pieces = []
    position = start
    for block in blocks:
        pieces.append(text[position : block.start])
        position = block.end
    pieces.append(text[position:])
    return "".join(pieces).strip()
