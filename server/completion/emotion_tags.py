"""The Phoenix-4 contract: a reply begins with exactly one well-formed `<emotion value="…"/>`.

Tavus' docs warn that lighter models "may not handle emotion tag instructions reliably". When a
request carries the rule (`perception.find_emotion_rule`), the reply's first content is checked
as it streams: the model's own tag passes through untouched when it is well formed; a malformed
one (`<emotion value=happy>`, `<Emotion value='Joyful' />`, a tag split over several chunks) is
replaced by the canonical form of its value; a reply that starts without a tag gets one chosen
from the user's latest perceived emotions. Only the reply's first content is ever held back —
one chunk when it is plain text, the tag's own chunks when the model writes one — and tool-call
replies, replies without content and requests without the rule are untouched.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass

from perception import Conversation, EmotionRule
from server.responders.base import ResponseEvent, close_events

OPENING = "<emotion"
# A model's tag longer than this is not a tag: it is spoken text that starts with `<`.
MAX_TAG_CHARS = 96
NEUTRAL = "neutral"
_TAG_VALUE = re.compile(r"""<emotion\s*(?:value)?\s*[=:]?\s*["']?([a-z][a-z_-]{0,31})""")
_WORD = re.compile(r"[a-z][a-z_-]*")


def canonical_tag(value: str) -> str:
    return f'<emotion value="{value}"/>'


@dataclass(frozen=True)
class EmotionPolicy:
    """The values a reply may use and how the user's perceived emotions choose one."""

    allowed: tuple[str, ...]
    mapping: Mapping[str, str]

    @classmethod
    def for_rule(
        cls, rule: EmotionRule, configured: Iterable[str], mapping: Mapping[str, str]
    ) -> EmotionPolicy:
        values = rule.values or [*configured, *rule.examples]
        allowed = tuple(dict.fromkeys(value.strip().lower() for value in values if value.strip()))
        return cls(allowed or (NEUTRAL,), {k.lower(): v.lower() for k, v in mapping.items()})

    @property
    def fallback(self) -> str:
        return NEUTRAL if NEUTRAL in self.allowed else self.allowed[0]

    def mapped(self, text: str | None) -> str | None:
        """The allowed value named by the earliest mapped word start in `text`, if any."""
        if not text:
            return None
        for match in _WORD.finditer(text[:2000].lower()):
            word = match.group(0)
            if word in self.allowed:
                return word
            for stem, value in self.mapping.items():  # the first stem in the map's order
                if word.startswith(stem) and value in self.allowed:
                    return value
        return None

    def for_conversation(self, conversation: Conversation) -> str:
        """What the persona shows, from the latest perceived emotions (then the voice)."""
        latest = conversation.latest
        return self.mapped(latest.emotions) or self.mapped(latest.audio) or self.fallback


def _could_become_tag(text: str) -> bool:
    """`text` (starting with `<`) is still a prefix of an emotion tag."""
    lowered = text[: len(OPENING)].lower()
    return OPENING.startswith(lowered) or lowered == OPENING


def _value_of(tag: str, policy: EmotionPolicy, chosen: str) -> str:
    """The allowed value a model's (possibly malformed) tag names, else `chosen`."""
    match = _TAG_VALUE.match(tag.lower())
    value = match.group(1) if match else ""
    if value in policy.allowed:
        return value
    return policy.mapped(value) or chosen


def repaired_start(text: str, policy: EmotionPolicy, chosen: str, final: bool) -> str | None:
    """The reply's beginning with its tag guaranteed, or None while more text is needed."""
    body = text.lstrip()
    if not body:  # only whitespace so far
        return None if not final else canonical_tag(chosen)
    if not body.startswith("<") or not _could_become_tag(body):
        return f"{canonical_tag(chosen)} {body}"
    end = body.find(">", 0, MAX_TAG_CHARS)
    if end < 0:
        if not final and len(body) < MAX_TAG_CHARS:
            return None  # the tag is still arriving
        if len(body) >= MAX_TAG_CHARS:
            return f"{canonical_tag(chosen)} {body}"
        # The reply ended inside a broken tag: it was only a tag.
        return canonical_tag(_value_of(body, policy, chosen))
    tag, rest = body[: end + 1], body[end + 1 :]
    canonical = canonical_tag(_value_of(tag, policy, chosen))
    if tag == canonical and text == body:
        return text
    return canonical + rest


def final_start(text: str, policy: EmotionPolicy, chosen: str) -> str:
    """The reply's beginning once no more of it will come."""
    return repaired_start(text, policy, chosen, final=True) or ""


def event_end(event: ResponseEvent) -> tuple[str | None, dict[str, int] | None]:
    return event.finish_reason, event.usage


async def with_emotion_tag(
    events: AsyncIterator[ResponseEvent],
    policy: EmotionPolicy,
    chosen: str,
    on_repair: Callable[[], None] = lambda: None,
) -> AsyncIterator[ResponseEvent]:
    """`events` with the reply's first content guaranteed to begin with one emotion tag;
    `on_repair` is told when the model's own start was changed (for the A/B statistics)."""
    text = ""  # content held back while the reply's start is undecided
    held: list[ResponseEvent] = []  # contentless events that arrived behind it
    try:
        async for event in events:
            delta = event.delta or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                text += content
                if text.isspace():
                    # Leading whitespace is dropped before the tag anyway: keep one character,
                    # not a buffer that grows and is stripped again per chunk (whitespace-only
                    # chunks made that quadratic: /healthz waited 548 ms, issue 23).
                    text = text[-1]
                final = event.finish_reason is not None
                start = repaired_start(text, policy, chosen, final)
                if start is not None:
                    if start != text:
                        on_repair()
                    if not held:
                        yield ResponseEvent({**delta, "content": start}, *event_end(event))
                        break
                    yield ResponseEvent({**delta, "content": start})
                    held.append(ResponseEvent(None, *event_end(event)))
                    break
            elif not text and (delta.get("tool_calls") or event.finish_reason is not None):
                yield event  # a tool call, or a reply without content: untouched
                break
            elif text and event.finish_reason is not None:
                if (start := final_start(text, policy, chosen)) != text:
                    on_repair()
                yield ResponseEvent({"content": start})
                held.append(event)
                break
            elif text:
                held.append(event)
            else:
                yield event
        else:
            if text:  # the stream ended while the start was undecided
                if (start := final_start(text, policy, chosen)) != text:
                    on_repair()
                yield ResponseEvent({"content": start})
        for waiting in held:
            yield waiting
        async for event in events:
            yield event
    finally:
        await close_events(events)
