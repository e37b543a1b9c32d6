"""The response model: any OpenAI-compatible `/chat/completions` endpoint, streamed and relayed.

Transport: one pooled `aiohttp.ClientSession` per app (created in the lifespan, closed on
shutdown); we retry once ourselves, only before the first token and within its deadline.
Why not the `openai` SDK's `AsyncOpenAI` here (issue 5 allows leaving it when it stands between
us and the latency target, if measured): through `with_streaming_response.create` our added
time to first token was 1.56 ms at p50 (its type-driven transform of `messages` alone ~1 ms
under the profiler); httpx2 driven directly still spent ~0.37-0.43 ms per streaming round trip
to a loopback upstream, aiohttp 0.18 ms (benchmarks/relay_latency.py and the commit message).
Raw SSE lines are relayed (`upstream_sse.py`), one `json.loads` per chunk. Every wait runs under
`RequestControl.wait`, so deadlines, a newer request for the same conversation, or the client
leaving (which cancels the task) stop the upstream request at once and close its connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from server.control import RequestControl, SupersededError
from server.errors import APIError, UpstreamError, UpstreamTimeoutError
from server.responders import CompletionJob, ResponseEvent
from server.settings import Settings
from server.upstream_sse import DONE, MalformedChunkError, chunk_events, data_payload

logger = logging.getLogger(__name__)

# Body fields we set ourselves or that are our own knobs; everything else is forwarded verbatim.
NOT_FORWARDED = frozenset({"model", "messages", "stream", "stream_options", "n", "prompt"})


MAX_LINE_BYTES = 8 * 1024 * 1024  # one SSE line; a bigger one is garbage, not a chunk


class UpstreamStatusError(Exception):
    """The upstream answered with an HTTP error status."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(f"upstream status {status_code}")
        self.status_code = status_code
        self.body = body


def _error_detail(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        detail = body.get("error", body)
        if isinstance(detail, dict):
            return detail
    return {}


def client_error(error: BaseException, settings: Settings) -> APIError:
    """What the client sees for an upstream failure (never the upstream's key)."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, UpstreamStatusError):
        detail = _error_detail(error.body)
        message = str(detail.get("message") or f"HTTP {error.status_code}")
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
    if isinstance(error, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return UpstreamTimeoutError(
            f"upstream gave no token within {settings.first_token_timeout_seconds:g}s"
        )
    if isinstance(error, aiohttp.ClientConnectorError):
        return UpstreamError("cannot reach the upstream model")
    return UpstreamError(f"connection to the upstream model failed ({type(error).__name__})")


async def sse_lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The response body as lines, split as bytes arrive (no 64 KiB line limit, unlike
    aiohttp's own line iterator: one tool-call chunk can be larger)."""
    buffer = b""
    async for data in response.content.iter_any():
        buffer += data
        while (newline := buffer.find(b"\n")) != -1:
            line, buffer = buffer[:newline], buffer[newline + 1 :]
            yield line.rstrip(b"\r").decode("utf-8", "replace")
        if len(buffer) > MAX_LINE_BYTES:
            raise UpstreamError("upstream sent an oversized line")
    if buffer:
        yield buffer.rstrip(b"\r").decode("utf-8", "replace")


def error_kind(error: BaseException) -> str:
    """A short label for metrics: status_5xx, timeout, connect, malformed, ..."""
    if isinstance(error, UpstreamStatusError):
        return f"status_{error.status_code // 100}xx"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(error, MalformedChunkError):
        return "malformed"
    if isinstance(error, UpstreamError) and error.message.startswith("upstream error:"):
        return "error_event"
    return "connection"


def _retryable(error: BaseException) -> bool:
    if isinstance(error, SupersededError):
        return False
    if isinstance(error, UpstreamStatusError):
        return error.status_code >= 500 or error.status_code in (408, 409, 429)
    return isinstance(error, aiohttp.ClientError | UpstreamError)


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

    def __init__(
        self, settings: Settings, on_error: Callable[[str], None] = lambda kind: None
    ) -> None:
        """Create in a running event loop (the app's lifespan): the session binds to it.
        `on_error` is told the kind of every upstream failure (for metrics)."""
        self.settings = settings
        self.on_error = on_error
        base = str(settings.upstream_base_url).rstrip("/")
        self.url = base + "/chat/completions"
        key = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "User-Agent": "perception-llm",
            **({"Authorization": f"Bearer {key}"} if key else {}),
            **settings.upstream_headers,
        }
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=settings.upstream_connect_timeout_seconds,
                sock_read=settings.idle_timeout_seconds + 1,  # our own idle deadline fires first
            ),
        )

    async def aclose(self) -> None:
        await self.session.close()

    async def _send(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST the request; an HTTP error status raises `UpstreamStatusError`."""
        response = await self.session.post(
            self.url,
            data=json.dumps(body),
            headers=self.headers,
            params=self.settings.upstream_query or None,
        )
        if response.status >= 400:
            try:
                raw = await response.read()
                try:
                    error_body: Any = json.loads(raw)
                except ValueError:
                    error_body = {"message": raw[:200].decode("utf-8", "replace")}
            finally:
                response.release()
            raise UpstreamStatusError(response.status, error_body)
        return response

    def model_for(self, job: CompletionJob) -> str:
        return self.settings.upstream_model or job.request.model or "default"

    def served_models(self) -> list[str]:
        return [self.settings.upstream_model] if self.settings.upstream_model else []

    def request_body(self, job: CompletionJob) -> dict[str, Any]:
        body = {k: v for k, v in job.body.items() if k not in NOT_FORWARDED}
        body.update(model=self.model_for(job), messages=job.prompt_messages, stream=True)
        if job.request.include_usage or not job.request.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def _open(
        self, stack: AsyncExitStack, job: CompletionJob, deadline: float
    ) -> tuple[_Lines, list[ResponseEvent]]:
        """Connect and read up to the first token, retrying once within the deadline."""
        loop = asyncio.get_running_loop()
        body = self.request_body(job)
        for attempt in (1, 2):
            attempt_stack = AsyncExitStack()
            try:
                response = await job.control.wait(self._send(body), deadline)
                attempt_stack.callback(response.close)  # a no-op once fully read and released
                lines = _Lines(sse_lines(response), job.control)
                first = await lines.next_events(deadline)
                if first is None and not lines.done:
                    raise UpstreamError("upstream stream ended before any token")
                stack.push_async_exit(attempt_stack)
                return lines, first or []
            except BaseException as error:
                await attempt_stack.aclose()
                if not isinstance(error, SupersededError | asyncio.CancelledError):
                    self.on_error(error_kind(error))
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
                    self.on_error("idle_timeout")
                    raise UpstreamTimeoutError(f"upstream went quiet for {idle:g}s") from None
                except SupersededError:
                    raise
                except APIError as error:
                    self.on_error(error_kind(error))
                    raise
                except Exception as error:
                    self.on_error("connection_lost")
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
