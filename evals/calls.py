"""Model and judge calls for a run: retried with exponential backoff on 429, 5xx, timeouts and
dropped connections, never past the run's hard cap on calls (printed before the run starts).

A call that still fails is a `CallFailed`: its cell is counted as errored — neither pass nor
fail — and the run exits 2 ("incomplete") instead of letting an outage look like a regression.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import openai

from emulator.stream import EndpointError, KeyRefusedError, StreamResult, listed_model, run_stream

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class CallFailed(Exception):
    """A model or judge call that failed for good (after retries, or at the cap)."""


class Retryable(Exception):
    """A failure worth another try (rate limit, server error, timeout, lost connection)."""


@dataclass
class CallBudget:
    """The hard cap on calls (retries included) for one run; counts what was spent."""

    cap: int
    model_calls: int = 0
    judge_calls: int = 0

    def take(self, kind: str) -> None:
        if self.model_calls + self.judge_calls >= self.cap:
            raise CallFailed(f"the run's cap of {self.cap} calls is spent (--max-calls)")
        if kind == "model":
            self.model_calls += 1
        else:
            self.judge_calls += 1


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff_seconds: float = 0.5  # doubled after each failed try

    async def run(self, kind: str, budget: CallBudget, attempt: Callable[[], Awaitable[T]]) -> T:
        failure = "no attempt made"
        for number in range(self.attempts):
            budget.take(kind)
            try:
                return await attempt()
            except Retryable as error:
                failure = str(error)
            if number + 1 < self.attempts:
                await asyncio.sleep(self.backoff_seconds * 2**number)
        raise CallFailed(f"{kind} failed after {self.attempts} tries: {failure}")


async def model_reply(client: openai.AsyncOpenAI, body: dict[str, Any]) -> StreamResult:
    """One streamed reply, as Tavus would get it; Retryable or CallFailed when there is none."""
    try:
        result = await run_stream(client, body)
    except KeyRefusedError as error:  # no retry helps
        raise CallFailed(str(error)) from None
    except EndpointError as error:  # unreachable, connection dropped: maybe back soon
        raise Retryable(str(error)) from None
    if result.status in RETRYABLE_STATUS:
        raise Retryable(result.error or f"HTTP {result.status}")
    if result.error and result.status == 200:  # an error event mid-stream: the model failed
        raise Retryable(result.error)
    if result.error:
        raise CallFailed(result.error)
    return result


async def judge_reply(client: openai.AsyncOpenAI, model: str, messages: list[Any]) -> str:
    """The judge's answer text (temperature 0: the same reply is graded the same way)."""
    try:
        completion = await client.chat.completions.create(
            model=model, messages=messages, temperature=0
        )
    except openai.APIStatusError as error:
        if error.status_code in RETRYABLE_STATUS:
            raise Retryable(f"judge HTTP {error.status_code}") from None
        raise CallFailed(f"judge HTTP {error.status_code}: {error.message}") from None
    except (openai.APIConnectionError, openai.APITimeoutError) as error:
        raise Retryable(f"judge unreachable: {error.__cause__ or error}") from None
    choices = completion.choices or []
    content = choices[0].message.content if choices else None
    return content or ""


async def listed_by(url: str, api_key: str | None) -> str | None:
    """The endpoint's first listed model (any over `echo`), as `compare` chooses one."""
    client = openai.AsyncOpenAI(base_url=url, api_key=api_key or "not-needed", max_retries=0)
    try:
        return await listed_model(client)
    finally:
        await client.close()
