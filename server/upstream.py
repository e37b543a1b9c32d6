"""The response model: any OpenAI-compatible `/chat/completions` endpoint, streamed and relayed.

One `AsyncOpenAI` client per app (pooled connections), with SDK retries off: we retry once
ourselves, only before the first token and only within the first-token deadline. The SDK builds
and sends the request; its raw SSE lines are relayed (`with_streaming_response`), see
`upstream_sse.py`. Every wait runs under `RequestControl.wait`, so deadlines, a newer request for
the same conversation, or the client leaving (which cancels the task) stop the upstream request
at once and release its connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx2
import openai

from server.control import RequestControl, SupersededError
from server.errors import APIError, UpstreamError, UpstreamTimeoutError
from server.responders import CompletionJob, ResponseEvent
from server.settings import Settings
from server.upstream_sse import DONE, MalformedChunkError, chunk_events, data_payload

logger = logging.getLogger(__name__)

# Body fields we set ourselves or that are our own knobs; everything else is forwarded verbatim.
NOT_FORWARDED = frozenset({"model", "messages", "stream", "stream_options", "n", "prompt"})


def upstream_client(settings: Settings) -> openai.AsyncOpenAI:
    key = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
    return openai.AsyncOpenAI(
        base_url=settings.upstream_base_url,
        api_key=key or "not-needed",  # local servers (Ollama, llama.cpp) ignore it
        default_headers=settings.upstream_headers or None,
        default_query=settings.upstream_query or None,
        max_retries=0,
        timeout=httpx2.Timeout(
            connect=settings.upstream_connect_timeout_seconds,
            read=settings.idle_timeout_seconds + 1,  # our own idle deadline fires first
            write=10.0,
            pool=settings.upstream_connect_timeout_seconds,
        ),
    )


def client_error(error: BaseException, settings: Settings) -> APIError:
    """What the client sees for an upstream failure (never the upstream's key or URL secrets)."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, openai.APIStatusError):
        body = error.body if isinstance(error.body, dict) else {}
        detail = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
        message = str(detail.get("message") or error.message)
        if 400 <= error.status_code < 500:
            mapped = APIError(
                f"upstream rejected the request: {message}",
                param=detail.get("param") if isinstance(detail.get("param"), str) else None,
                code=detail.get("code") if isinstance(detail.get("code"), str) else None,
            )
            mapped.status_code = error.status_code
            mapped.error_type = str(detail.get("type") or "invalid_request_error")
            return mapped
        return UpstreamError(f"upstream failed with status {error.status_code}: {message}")
    if isinstance(error, openai.APITimeoutError | TimeoutError | httpx2.TimeoutException):
        return UpstreamTimeoutError(
            f"upstream gave no token within {settings.first_token_timeout_seconds:g}s"
        )
    if isinstance(error, openai.APIConnectionError):
        return UpstreamError("cannot reach the upstream model")
    return UpstreamError(f"connection to the upstream model failed ({type(error).__name__})")


def _retryable(error: BaseException) -> bool:
    if isinstance(error, SupersededError):
        return False
    if isinstance(error, openai.APIStatusError):
        return error.status_code >= 500 or error.status_code in (408, 409, 429)
    return isinstance(
        error, openai.APIConnectionError | httpx2.HTTPError | MalformedChunkError | UpstreamError
    )


class _Lines:
    """The upstream's lines, read under the request's deadlines."""

    def __init__(self, lines: AsyncIterator[str], control: RequestControl) -> None:
        self.lines = lines
        self.control = control
        self.done = False

    async def next_events(self, deadline: float) -> list[ResponseEvent] | None:
        """The next non-empty batch of events; None at the end of the stream."""
        while not self.done:
            try:
                line = await self.control.wait(anext(self.lines), deadline)
            except StopAsyncIteration:
                return None
            payload = data_payload(line)
            if payload is None:
                continue
            if payload == DONE:
                self.done = True
                return None
            events = chunk_events(payload)
            if events:
                return events
        return None

    async def drain(self, deadline: float) -> None:
        """Read what follows `[DONE]` (the chunked terminator), so the connection goes back to
        the pool instead of being closed half-read. Best effort: any trouble just closes it."""
        try:
            while True:
                await self.control.wait(anext(self.lines), deadline)
        except (StopAsyncIteration, Exception):
            return


class UpstreamResponder:
    """Streams replies from the configured OpenAI-compatible upstream."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = upstream_client(settings)

    async def aclose(self) -> None:
        await self.client.close()

    def model_for(self, job: CompletionJob) -> str:
        return self.settings.upstream_model or job.request.model or "default"

    def served_models(self) -> list[str]:
        return [self.settings.upstream_model] if self.settings.upstream_model else []

    def request_arguments(self, job: CompletionJob) -> dict[str, Any]:
        extra = {k: v for k, v in job.body.items() if k not in NOT_FORWARDED}
        if job.request.include_usage or not job.request.stream:
            extra["stream_options"] = {"include_usage": True}
        return {
            "model": self.model_for(job),
            "messages": job.prompt_messages,
            "stream": True,
            "extra_body": extra,
        }

    async def _open(
        self, stack: AsyncExitStack, job: CompletionJob, deadline: float
    ) -> tuple[_Lines, list[ResponseEvent]]:
        """Connect and read up to the first token, retrying once within the deadline."""
        loop = asyncio.get_running_loop()
        arguments = self.request_arguments(job)
        for attempt in (1, 2):
            attempt_stack = AsyncExitStack()
            try:
                response = await job.control.wait(
                    attempt_stack.enter_async_context(
                        self.client.chat.completions.with_streaming_response.create(**arguments)
                    ),
                    deadline,
                )
                lines = _Lines(response.iter_lines(), job.control)
                first = await lines.next_events(deadline)
                if first is None and not lines.done:
                    raise UpstreamError("upstream stream ended before any token")
                stack.push_async_exit(attempt_stack)
                return lines, first or []
            except BaseException as error:
                await attempt_stack.aclose()
                if attempt == 2 or not _retryable(error) or loop.time() >= deadline:
                    raise
                logger.warning("upstream attempt failed (%s); retrying once", type(error).__name__)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(self, job: CompletionJob) -> AsyncIterator[ResponseEvent]:
        loop = asyncio.get_running_loop()
        idle = self.settings.idle_timeout_seconds
        async with AsyncExitStack() as stack:
            try:
                lines, first = await self._open(
                    stack, job, loop.time() + self.settings.first_token_timeout_seconds
                )
            except (Exception, TimeoutError) as error:
                raise client_error(error, self.settings) from None
            finished = any(event.finish_reason for event in first)
            for event in first:
                yield event
            while True:
                try:
                    events = await lines.next_events(loop.time() + idle)
                except TimeoutError:
                    raise UpstreamTimeoutError(f"upstream went quiet for {idle:g}s") from None
                except APIError:
                    raise
                except Exception as error:
                    raise UpstreamError(
                        f"connection to the upstream model was lost ({type(error).__name__})"
                    ) from None
                if events is None:
                    if not (lines.done or finished):
                        raise UpstreamError("upstream stream ended before it finished")
                    await lines.drain(loop.time() + 1.0)
                    return
                for event in events:
                    finished = finished or event.finish_reason is not None
                    yield event
