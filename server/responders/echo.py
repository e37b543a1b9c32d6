"""The built-in offline responder (`echo`): answers with no model and no keys.

It quotes the user's last utterance and says what the *rendered prompt* tells the model about the
user — the lines of the fenced perception block the template produced, changes note included —
so anyone can wire a Tavus persona to this server and *hear* what it perceives, and two templates
give two different answers offline (`perception-llm compare`). With no fence in the prompt
(`passthrough`), it describes the parsed perception and says the model saw raw tags. The reply
is deterministic and streamed word by word like a model's, optionally paced by
`echo_word_delay_ms`. With `tools`, it calls the tool the user names and quotes what the tool
returned (`echo_tools.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from perception import Conversation, Snapshot, message_text, spoken_of
from perception.fields import field_names
from prompts import estimate_message_tokens, estimate_tokens
from prompts.fence import CLOSING, OPENING
from server.responders.base import CompletionJob, ResponseEvent, words
from server.responders.echo_tools import named_tool, tool_call_delta, tool_results

_SPEECH_LIMIT = 400  # quoting a whole pasted essay back is not useful in a voice reply


def last_user_speech(messages: list[Any]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return (message_text(message.get("content")) or "").strip()
    return None


def describe_perception(latest: Snapshot) -> list[str]:
    """One sentence per perceived field, in the registry's order (silence is the opening's)."""
    values = {name: getattr(latest, name, None) for name in field_names() if name != "silence"}
    values.update(sorted(latest.extra.items()))
    labelled = [(spoken_of(name), value) for name, value in values.items()]
    return [f"{label}: {value.rstrip('.')}." for label, value in labelled if value]


def fenced_lines(prompt_messages: list[Any]) -> list[str] | None:
    """The item lines of the last fenced perception block in the prompt, or None if none."""
    for message in reversed(prompt_messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        text = message_text(message.get("content")) or ""
        start = text.rfind(OPENING)
        if start == -1:
            continue
        end = text.find(CLOSING, start)
        block = text[start : end if end != -1 else len(text)].splitlines()[1:]  # past the marker
        # Item lines, whatever the template's layout; headings ("...right now:") are skipped.
        return [
            line.strip().removeprefix("- ")
            for line in block
            if line.strip() and not line.strip().endswith(":")
        ]
    return None


def compose_reply(conversation: Conversation, prompt_messages: list[Any] | None = None) -> str:
    speech = last_user_speech(conversation.messages)
    results = tool_results(conversation.messages)
    if results:  # the turn's tool results came back: say what they were
        return " ".join(results)
    if conversation.latest.silence:
        opening = "You stayed silent."
    elif speech is None or not speech:
        opening = "I didn't hear anything from you yet."
    else:
        quoted = speech if len(speech) <= _SPEECH_LIMIT else speech[:_SPEECH_LIMIT] + "…"
        opening = f'You said: "{quoted}"'
    lines = fenced_lines(prompt_messages) if prompt_messages is not None else None
    if lines:
        perceived = ["The prompt tells me: " + "; ".join(line.rstrip(".") for line in lines) + "."]
    else:
        perceived = describe_perception(conversation.latest)
        if perceived and prompt_messages is not None:
            perceived.insert(0, "The prompt has no fence; the model saw raw tags.")
    if not perceived:
        perceived = ["I have no perception of you in this request."]
    return " ".join([opening, *perceived])


class EchoResponder:
    """Deterministic offline responder; see module docstring."""

    def __init__(self, model: str, word_delay_ms: float = 0.0) -> None:
        self.model = model
        self.word_delay = word_delay_ms / 1000

    def model_for(self, job: CompletionJob) -> str:
        return self.model

    def served_models(self) -> list[str]:
        return [self.model]

    async def stream(self, job: CompletionJob) -> AsyncIterator[ResponseEvent]:
        messages = job.conversation.messages
        last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        tool = None
        if job.request.tools and last.get("role") == "user":
            speech = message_text(last.get("content")) or ""
            tool = named_tool(job.request.tools, job.request.tool_choice, speech)
        if tool is not None:
            yield ResponseEvent(delta=tool_call_delta(job.request.tools or [], tool, speech))
            yield ResponseEvent(finish_reason="tool_calls", usage=self.usage(job, ""))
            return
        reply = compose_reply(job.conversation, job.prompt_messages)
        for index, word in enumerate(words(reply)):
            if self.word_delay and index:
                await job.control.wait(asyncio.sleep(self.word_delay), None)
            yield ResponseEvent(delta={"content": word})
        yield ResponseEvent(finish_reason="stop", usage=self.usage(job, reply))

    @staticmethod
    def usage(job: CompletionJob, reply: str) -> dict[str, int]:
        prompt_tokens = estimate_message_tokens(job.prompt_messages)
        completion_tokens = estimate_tokens(reply)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
