"""The context budget: collapse perception first, then drop the oldest turns, never persona text
or the last user turn, tool calls with their results; logged; and the headline measurement."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from perception import parse_messages
from prompts.fence import new_fence
from prompts.render import render_prompt
from prompts.templates import TemplateLibrary
from prompts.tokens import estimate_message_tokens, estimate_tokens

LIBRARY = TemplateLibrary()
PERSONA = {"role": "system", "content": "You are Ava, a patient tutor. " * 20}


def raven_conversation(
    turns: int, emotion_of: Any = lambda t: "Calm" if t % 2 else "Tense"
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        PERSONA,
        {"role": "assistant", "content": "Hi! What shall we study?"},
    ]
    for turn in range(turns):
        messages.append(
            {
                "role": "system",
                "content": (
                    f"<user_appearance>A student with curly hair at a desk, lamp on, turn {turn}.</user_appearance> "
                    f"<user_emotions>{emotion_of(turn)}, focused on the page.</user_emotions> "
                    "<user_screenshare>A geometry worksheet with a triangle and three questions.</user_screenshare>"
                ),
            }
        )
        messages.append(
            {"role": "user", "content": f"Question {turn}: how do I find the missing angle here?"}
        )
        messages.append(
            {
                "role": "assistant",
                "content": f"For question {turn}, add the two angles and subtract from 180.",
            }
        )
    messages.pop()
    return messages


def render(messages: list[Any], budget: int | None, template: str = "default") -> Any:
    return render_prompt(
        parse_messages(messages),
        messages,
        LIBRARY.get(template),
        budget_tokens=budget,
        fence=new_fence("n"),
    )


def test_default_sends_under_half_the_tokens_of_passthrough_for_30_turns() -> None:
    messages = raven_conversation(30)
    passthrough = render(messages, None, "passthrough").prompt_tokens
    default = render(messages, None).prompt_tokens
    minimal = render(messages, None, "minimal").prompt_tokens
    assert default < passthrough / 2
    assert minimal < default


def test_within_budget_nothing_is_dropped() -> None:
    rendered = render(raven_conversation(3), 5000)
    assert (rendered.dropped_turns, rendered.perception_collapsed, rendered.over_budget) == (
        0,
        False,
        False,
    )


def test_over_budget_collapses_perception_then_drops_oldest_turns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages = raven_conversation(30)
    full = render(messages, None)
    budget = full.prompt_tokens - 200
    with caplog.at_level(logging.INFO, logger="prompts.render"):
        rendered = render(messages, budget)
    assert rendered.perception_collapsed
    assert "Notable changes" not in rendered.messages[-1]["content"]
    assert rendered.dropped_turns > 0
    assert rendered.prompt_tokens <= budget
    assert rendered.messages[0] == PERSONA  # persona verbatim
    assert rendered.messages[-1]["content"].endswith(
        "Question 29: how do I find the missing angle here?"
    )
    # the oldest turns went first: after the greeting (always kept), what is left is a suffix
    assert rendered.messages[2] == full.messages[2] == messages[1]  # the greeting
    kept = [m["content"] for m in rendered.messages[3:-1]]
    turns = [m["content"] for m in full.messages[3:-1]]
    assert kept == turns[len(turns) - len(kept) :]
    record = next(r for r in caplog.records if "prompt budget" in r.getMessage())
    assert f"dropped_turns={rendered.dropped_turns}" in record.getMessage()


def test_collapse_alone_is_enough_when_it_fits() -> None:
    messages = raven_conversation(4)
    full = render(messages, None)
    changes = full.messages[-1]["content"].split("Notable changes")[1]
    rendered = render(messages, full.prompt_tokens - estimate_tokens(changes) // 2)
    assert rendered.perception_collapsed and rendered.dropped_turns == 0


def test_persona_and_last_user_turn_survive_any_budget() -> None:
    rendered = render(raven_conversation(10), 256)
    assert rendered.over_budget
    roles = [m["role"] for m in rendered.messages]
    assert roles == ["system", "system", "assistant", "user"]  # persona, fence, greeting, turn
    assert rendered.messages[0] == PERSONA


def test_tool_calls_are_dropped_with_their_results() -> None:
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "' + "x" * 400 + '"}'},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": "c1", "content": "y" * 400}
    messages = [
        PERSONA,
        {"role": "user", "content": "first"},
        call,
        result,
        {"role": "assistant", "content": "found it"},
        {"role": "user", "content": "thanks"},
    ]
    budget = estimate_message_tokens(messages) - 150
    rendered = render(messages, budget)
    roles = [m["role"] for m in rendered.messages]
    assert "tool" not in roles and not any(m.get("tool_calls") for m in rendered.messages)
    assert rendered.messages[-1] == {"role": "user", "content": "thanks"}


def test_passthrough_is_untouched_but_reports_the_budget() -> None:
    messages = raven_conversation(30)
    rendered = render(messages, 500, "passthrough")
    assert rendered.messages == messages and rendered.over_budget and rendered.dropped_turns == 0


def test_the_greeting_outlives_older_user_turns() -> None:
    """Tavus sends the persona's greeting as an assistant turn before the first user turn; the
    budget drops older user turns before it (tests/fixtures/perception/tavus-logged-layout.json)."""
    greeting = {"role": "assistant", "content": "Hi! Ready to go over your checkride?"}
    turns: list[dict[str, Any]] = []
    for index in range(12):
        turns.append({"role": "user", "content": f"question {index} " + "q" * 300})
        turns.append({"role": "assistant", "content": f"answer {index} " + "a" * 300})
    messages = [PERSONA, greeting, *turns, {"role": "user", "content": "last question"}]
    rendered = render_prompt(
        parse_messages(messages), messages, TemplateLibrary().get("default"), budget_tokens=600
    )
    assert rendered.dropped_turns > 0
    assert rendered.messages[1] == greeting
    assert rendered.messages[-1]["content"].endswith("last question")
    assert not any("question 0 " in str(m.get("content")) for m in rendered.messages)
