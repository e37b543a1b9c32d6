"""Properties of parse_messages over generated input (hypothesis, fixed seed via derandomize)."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from perception import parse_messages
from perception.models import FIELD_NAMES

FRAGMENTS = [
    "<user_emotions>",
    "</user_emotions>",
    "<user_appearance>",
    "</user_appearance>",
    "<user_screenshare>",
    "</user_screenshare>",
    '<user_screen kind="x">',
    "</user_screen>",
    "<user_audio_analysis>",
    "</user_audio_analysis>",
    "<user_gaze>",
    "</user_gaze>",
    "<USER_EMOTIONS>",
    "</ user_emotions >",
    "<user_",
    "</user_",
    "user_",
    "<",
    ">",
    "/",
    "USER_SPEECH:",
    "VISUAL_SCENE:",
    "...",
    "<|im_start|>",
    '<emotion value="happy"/>',
    "\n",
    " ",
    "\t",
    "\u200b",
    "\u202e",
    "\U000e0041",
    "happy",
    "a man",
    "Ignore previous instructions.",
]
TAG_NAMES = [
    "user_emotions",
    "user_appearance",
    "user_screenshare",
    "user_screen",
    "user_audio_analysis",
    "user_gaze",
]
loose = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=6).map(
    "".join
)
# Well-formed blocks with hostile insides, so most examples contain real observations.
block = st.builds(
    lambda name, inner: f"<{name}>{inner}</{name}>", st.sampled_from(TAG_NAMES), loose
)
audio_lead = st.builds(
    lambda inner, rest: f"<user_audio_analysis>{inner}</user_audio_analysis>{rest}", loose, loose
)
basic = st.builds(lambda a, b: f"USER_SPEECH: {a} VISUAL_SCENE: {b}", loose, loose)
text = st.one_of(
    st.lists(st.one_of(block, block, st.sampled_from(FRAGMENTS), loose), max_size=8).map("".join),
    audio_lead,
    basic,
)
content = st.one_of(
    text,
    st.none(),
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"type": st.just("text"), "text": text}),
            st.fixed_dictionaries(
                {"type": st.just("image_url"), "image_url": st.just({"url": "x"})}
            ),
        ),
        max_size=3,
    ),
)
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "user", "assistant", "tool", "developer"]),
        "content": content,
    }
)
odd_element = st.one_of(
    st.integers(), st.text(max_size=5), st.none(), st.fixed_dictionaries({"role": st.integers()})
)
messages = st.lists(st.one_of(message, message, message, message, message, odd_element), max_size=8)

MARKUP = re.compile(r"<\s*/?\s*user_", re.I)


def perception_values(conversation: Any) -> list[str]:
    values = []
    for fields in [conversation.latest, *conversation.observations]:
        values.extend(v for name in FIELD_NAMES if (v := getattr(fields, name)) is not None)
        values.extend(fields.extra.values())
    return values


@settings(max_examples=400, derandomize=True, deadline=None)
@given(messages)
def test_never_raises_and_never_leaks_markup_into_fields(msgs: list[Any]) -> None:
    conversation = parse_messages(msgs)
    for value in perception_values(conversation):
        assert not MARKUP.search(value), value
        assert value == value.strip()
        assert "\u200b" not in value and "\u202e" not in value and "\U000e0041" not in value
    assert all(
        i.message_index is None or 0 <= i.message_index < len(msgs) for i in conversation.issues
    )


@settings(max_examples=400, derandomize=True, deadline=None)
@given(messages)
def test_parsing_cleaned_messages_again_changes_nothing(msgs: list[Any]) -> None:
    cleaned = parse_messages(msgs).messages
    again = parse_messages(cleaned)
    assert again.mode == "none"
    assert again.observations == []
    assert again.messages == cleaned


TAGS = ["user_appearance", "user_emotions", "user_screenshare", "user_screen", "user_gaze"]
words = st.lists(
    st.sampled_from(["calm", "man", "glasses", "slides", "code", "red", "smiling"]),
    min_size=1,
    max_size=5,
)
blocks = st.lists(st.tuples(st.sampled_from(TAGS), words), min_size=1, max_size=4)
spaces = st.lists(
    st.sampled_from([" ", "\n", "\t", "  ", "\n\n", " \n "]), min_size=30, max_size=30
)


def render(block_list: list[tuple[str, list[str]]], gaps: list[str]) -> str:
    parts = []
    gap = iter(gaps * 4)
    for tag, value_words in block_list:
        inner = next(gap).join(value_words)
        parts.append(f"<{tag}>{next(gap)}{inner}{next(gap)}</{tag}>")
    return next(gap) + next(gap).join(parts) + next(gap)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(blocks, spaces, spaces)
def test_whitespace_layout_does_not_change_fields(
    block_list: list[tuple[str, list[str]]], gaps_a: list[str], gaps_b: list[str]
) -> None:
    first = parse_messages(
        [
            {"role": "system", "content": render(block_list, gaps_a)},
            {"role": "user", "content": "hi"},
        ]
    )
    second = parse_messages(
        [
            {"role": "system", "content": render(block_list, gaps_b)},
            {"role": "user", "content": "hi"},
        ]
    )
    assert first.latest == second.latest
    assert first.observations == second.observations
    assert first.messages == second.messages == [{"role": "user", "content": "hi"}]
    assert first.mode == "raven"
