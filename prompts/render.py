"""`render_prompt`: a parsed conversation + a template → the messages the response model gets.

Layout for every non-passthrough template:

1. persona system text: every system/developer message the parser kept, byte for byte, in order;
   then, when Tavus sent its rules as user-role `<additional_system_instructions>` messages,
   one system message of those rules in our own canonical text (`Conversation.wrapped_rules`);
2. one system message of fence instructions from the template (only when there is perception);
3. the conversation turns, user/assistant/tool text neutralised (no Tavus markup, Basic prefixes or
   chat-template tokens); tool calls, ids and names untouched;
4. the template's fenced perception block, prepended to the last user turn. Perception is thus
   demoted from the system role to the user's own turn, where user-derived data belongs.

Assistant turns keep Tavus' `<emotion …/>` tags only when the persona has the emotion-tag rule.

Before the user has spoken (Tavus calls with only system text, or with just the greeting), a
placeholder user turn `NO_USER_TURN` is added after the turns: several providers reject a
conversation with no user message, and the model should know nobody has spoken yet.

Over the budget: first the "changes" note is dropped (perception collapses to the latest
snapshot), then the oldest turns (see budget.py). What was dropped is logged and returned.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

from perception import INSTRUCTION_ROLES, Conversation, strip_emotion_tags, without_preamble
from prompts.budget import drop_oldest_turns, last_user_index
from prompts.fence import Fence, escape_fenced, new_fence
from prompts.templates import PromptTemplate
from prompts.tokens import estimate_message_tokens
from prompts.view import template_variables

logger = logging.getLogger(__name__)
NO_USER_TURN = "[The call has just started; the user has not said anything yet.]"


@dataclass(frozen=True)
class RenderedPrompt:
    template: str
    messages: list[Any]
    prompt_tokens: int
    budget_tokens: int | None
    dropped_turns: int  # conversation units dropped to fit the budget
    perception_collapsed: bool  # the "changes" note was dropped to fit the budget
    over_budget: bool  # still over after everything that may be dropped was

    def summary(self) -> dict[str, Any]:
        return {
            "prompt": self.template,
            "messages": self.messages,
            "prompt_tokens": self.prompt_tokens,
            "budget_tokens": self.budget_tokens,
            "dropped_turns": self.dropped_turns,
            "perception_collapsed": self.perception_collapsed,
            "over_budget": self.over_budget,
        }


def _is_instruction(message: Any) -> bool:
    role = message.get("role") if isinstance(message, dict) else None
    return isinstance(role, str) and role in INSTRUCTION_ROLES


_UNTRUSTED_ROLES = ("user", "assistant", "tool", "function")
_TEXT_KEYS = ("text", "refusal")  # the string fields of content parts that a model reads as text


def _neutralised_part(part: Any) -> Any:
    if not isinstance(part, dict):
        return part
    changed = {k: escape_fenced(part[k]) for k in _TEXT_KEYS if isinstance(part.get(k), str)}
    return {**part, **changed} if changed else part


def _is_text_part(part: Any) -> bool:
    return (
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
    )


def _neutralised_run(run: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent text parts, neutralised. A model's chat template joins them with nothing (Llama
    3.2 Vision, Gemma 3 and Qwen2-VL templates iterate the parts) or a newline (vLLM, for string
    templates), so a token or tag split across parts (`<|im_` + `start|>`) would reach the model
    whole (review of issue 23): when a join of the neutralised parts is not itself neutral, the
    run becomes one part, neutralised whole. Ordinary parts stay as they were sent."""
    parts = [_neutralised_part(part) for part in run]
    if len(run) < 2:
        return parts
    texts = [part["text"] for part in parts]
    if all(escape_fenced(joined) == joined for joined in ("".join(texts), "\n".join(texts))):
        return parts
    return [{**run[0], "text": escape_fenced("".join(part["text"] for part in run))}]


def _neutralised_parts(content: list[Any]) -> list[Any]:
    result: list[Any] = []
    for is_text, group in itertools.groupby(content, key=_is_text_part):
        parts = list(group)
        result.extend(_neutralised_run(parts) if is_text else map(_neutralised_part, parts))
    return result


def _neutralised_turn(message: Any, strip_emotions: bool = False) -> Any:
    """User-derived text, neutralised wherever the model reads it as text: content strings, the
    text of content parts, and the message `name`. Left byte-exact on purpose: assistant
    `tool_calls` (their arguments must reach the tool unchanged), ids, and non-text parts
    (an image URL or audio data would break if edited). With `strip_emotions`, assistant text
    loses its `<emotion …/>` tags (see `render_prompt`)."""
    if not isinstance(message, dict) or message.get("role") not in _UNTRUSTED_ROLES:
        return message
    # All non-instruction text gets the fence escaping: the speech shares its message with the
    # fence, and tool results (web pages, documents) are untrusted too.
    updates: dict[str, Any] = {}
    content = message.get("content")
    if isinstance(content, str):
        if strip_emotions and message.get("role") == "assistant":
            content = strip_emotion_tags(content)
        updates["content"] = escape_fenced(content)
    elif isinstance(content, list):
        updates["content"] = _neutralised_parts(content)
    if isinstance(message.get("name"), str):
        updates["name"] = escape_fenced(message["name"])
    return {**message, **updates} if updates else message


def _without_preamble(message: Any) -> Any:
    """`message` without Tavus' perception preamble; None when nothing else was in it."""
    content = message.get("content")
    if isinstance(content, str):
        text = without_preamble(content)
        if text == content:
            return message
        return {**message, "content": text} if text else None
    return message  # content parts: kept verbatim (Tavus sends strings)


def _rules_message(conversation: Conversation, fenced: bool) -> dict[str, Any] | None:
    """Tavus' rules found in user-role wrappers, as one system message of our canonical texts
    (each once; the preamble only when perception is not fenced, as for system text)."""
    texts: list[str] = []
    for rule in conversation.wrapped_rules:
        if fenced and rule.kind == "tavus_perception_preamble":
            continue
        if rule.text not in texts:
            texts.append(rule.text)
    return {"role": "system", "content": "\n".join(texts)} if texts else None


def _after_leading_instructions(turns: list[Any], message: dict[str, Any]) -> list[Any]:
    position = 0
    while position < len(turns) and _is_instruction(turns[position]):
        position += 1
    return [*turns[:position], message, *turns[position:]]


def _with_block(turns: list[Any], block: str) -> list[Any]:
    """`turns` with `block` prepended to the last user turn (or appended as one)."""
    index = last_user_index(turns)
    if index is None:
        return [*turns, {"role": "user", "content": block}]
    message = turns[index]
    content = message.get("content")
    if isinstance(content, list):
        new_content: Any = [{"type": "text", "text": block}, *content]
    else:
        speech = content or ""
        new_content = f"{block}\n\n{speech}" if speech else block
    return [*turns[:index], {**message, "content": new_content}, *turns[index + 1 :]]


def render_prompt(
    conversation: Conversation,
    original_messages: list[Any],
    template: PromptTemplate,
    *,
    budget_tokens: int | None = None,
    fence: Fence | None = None,
) -> RenderedPrompt:
    if template.passthrough:
        tokens = estimate_message_tokens(original_messages)
        over = budget_tokens is not None and tokens > budget_tokens
        return RenderedPrompt(
            template.name, list(original_messages), tokens, budget_tokens, 0, False, over
        )

    fence = fence or new_fence()
    # Assistant history keeps Tavus' `<emotion …/>` tags only when the persona has the rule
    # that asks for them (the model sees the pattern it must follow); otherwise they are noise
    # the model would copy into speech.
    strip_emotions = conversation.emotion_rule is None
    fenced = not conversation.latest.is_empty()
    rules = _rules_message(conversation, fenced)
    if not fenced:
        # Nothing to fence: keep the original order, so a request without perception passes
        # through unharmed (only neutralised).
        head: list[Any] = []
        turns = [_neutralised_turn(m, strip_emotions) for m in conversation.messages]
        if rules is not None:
            turns = _after_leading_instructions(turns, rules)
        collapsed = False
        head_tokens = 0
        turn_tokens = estimate_message_tokens(turns)
    else:
        # Tavus' perception preamble tells the model to read <user_*> tags; once perception is
        # fenced there are none, so the fence's own instructions (appended below) replace it.
        head = [_without_preamble(m) for m in conversation.messages if _is_instruction(m)]
        head = [m for m in head if m is not None]
        if rules is not None:
            head.append(rules)
        plain_turns = [
            _neutralised_turn(m, strip_emotions)
            for m in conversation.messages
            if not _is_instruction(m)
        ]
        variables = template_variables(conversation, fence, include_changes=True)
        head.append({"role": "system", "content": template.render_block("instructions", variables)})
        turns = _with_block(plain_turns, template.render_block("perception", variables))
        collapsed = False
        head_tokens = estimate_message_tokens(head)
        turn_tokens = estimate_message_tokens(turns)
        over = budget_tokens is not None and head_tokens + turn_tokens > budget_tokens
        if over and variables["changes"]:
            variables = template_variables(conversation, fence, include_changes=False)
            turns = _with_block(plain_turns, template.render_block("perception", variables))
            turn_tokens = estimate_message_tokens(turns)
            collapsed = True

    if last_user_index(turns) is None:
        placeholder = {"role": "user", "content": NO_USER_TURN}
        turns = [*turns, placeholder]
        turn_tokens += estimate_message_tokens([placeholder])
    dropped = 0
    tokens = head_tokens + turn_tokens
    if budget_tokens is not None:
        turns, dropped, tokens = drop_oldest_turns(turns, tokens, budget_tokens)
    messages = head + turns
    over = budget_tokens is not None and tokens > budget_tokens
    if collapsed or dropped or over:
        logger.info(
            "prompt budget: template=%s tokens=%d budget=%s perception_collapsed=%s "
            "dropped_turns=%d still_over=%s",
            template.name,
            tokens,
            budget_tokens,
            collapsed,
            dropped,
            over,
        )
    return RenderedPrompt(template.name, messages, tokens, budget_tokens, dropped, collapsed, over)
