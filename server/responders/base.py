"""What a response model is to the server: something that streams `ResponseEvent`s for a job.

The streaming adapter (`server/completion/streaming.py`) turns events into OpenAI chunks;
responders never build wire JSON themselves. An event carries a choice `delta` as the OpenAI
dict (so an upstream's tool-call fragments pass through exactly), a `finish_reason`, or `usage`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from perception import Conversation
from server.completion.control import RequestControl
from server.wire.schemas import ChatCompletionRequest


@dataclass(frozen=True, slots=True)
class ResponseEvent:
    delta: dict[str, Any] | None = None  # choice delta without `role`, e.g. {"content": "Hi"}
    finish_reason: str | None = None
    usage: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class CompletionJob:
    """Everything a responder needs for one request."""

    request: ChatCompletionRequest
    body: dict[str, Any]  # the raw JSON body, for forwarding unknown fields untouched
    conversation: Conversation
    prompt_messages: list[Any]  # what the response model should see
    control: RequestControl  # deadlines and "newest wins" for this request


class Responder(Protocol):
    def model_for(self, job: CompletionJob) -> str:
        """The model name reported in responses."""
        ...

    def stream(self, job: CompletionJob) -> AsyncIterator[ResponseEvent]:
        """Events of the reply; cancelling the iteration must stop all work at once."""
        ...

    def served_models(self) -> list[str]: ...


async def close_events(events: AsyncIterator[Any]) -> None:
    """Close an async iterator at once (an async generator's `finally` runs, so an upstream read
    stops); a plain iterator without `aclose` needs nothing."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


_WORD_RE = re.compile(r"\s*\S+\s*")


def words(text: str) -> list[str]:
    """`text` in word-sized pieces (each with its following whitespace) that join back to it."""
    return _WORD_RE.findall(text)
