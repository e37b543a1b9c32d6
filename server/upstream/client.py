"""The response model: any OpenAI-compatible `/chat/completions` endpoint, streamed and relayed.

Transport: one pooled `aiohttp.ClientSession` per app (created in the lifespan, closed on
shutdown); we retry once ourselves, only before the first token and within its deadline.
Why not the `openai` SDK's `AsyncOpenAI` here: through `with_streaming_response.create` our added
time to first token was 1.56 ms at p50 (its type-driven transform of `messages` alone ~1 ms
under the profiler); httpx driven directly still spent ~0.37-0.43 ms per streaming round trip
to a loopback upstream, aiohttp 0.18 ms (benchmarks/relay_latency.py).
Bytes go through one SSE decoder (`server/wire/sse_decoder.py`) and one chunk reader
(`chunks.py`).
Every wait runs under `RequestControl.wait`, so deadlines, a newer request for the same
conversation, or the client leaving (which cancels the task) stop the upstream request at once
and close its connection. What an upstream says is redacted of our secrets before it is relayed
or logged; redirects are never followed (they would carry our key and the conversation away).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from server.errors import (
    APIError,
    ShutdownError,
    SupersededError,
    UpstreamEmptyReplyError,
    UpstreamError,
    UpstreamTimeoutError,
)
from server.redaction import Redactor
from server.responders.base import CompletionJob, ResponseEvent
from server.settings import Settings
from server.upstream.chunks import is_speakable
from server.upstream.events import UpstreamEvents
from server.upstream.failures import (
    RELAYED_CHARS,
    UpstreamStatusError,
    client_error,
    error_kind,
    retry_after_seconds,
    retryable,
)
from server.upstream.models import MODELS_LIST_BYTES, model_ids

logger = logging.getLogger(__name__)

# Body fields we set ourselves or that are our own knobs; everything else is forwarded verbatim.
NOT_FORWARDED = frozenset({"model", "messages", "stream", "stream_options", "n", "prompt"})
# After `finish_reason`, how long to wait for the usage chunk that OpenAI sends next (only when
# usage was asked for); an upstream that holds the connection open must not hold the reply.
USAGE_WAIT_SECONDS = 0.25
# After `[DONE]`, the rest of the body (the chunked terminator) is read in the background, so
# the connection goes back to the pool without delaying the reply's end.
DRAIN_SECONDS = 1.0


class UpstreamResponder:
    """Streams replies from the configured OpenAI-compatible upstream."""

    def __init__(
        self,
        settings: Settings,
        redactor: Redactor,
        on_error: Callable[[str], None] = lambda kind: None,
    ) -> None:
        """`redactor` is the app's one (`Services.redactor`); `on_error` is told the kind of
        every upstream failure (for metrics); `start()` opens the connection pool in the serving
        loop."""
        self.settings = settings
        self.on_error = on_error
        self.redactor = redactor
        # A reply is what the user hears: only secrets long enough to be keys are taken out of
        # it, so a header value "true" or a loopback key "secret" never blanks a spoken word.
        self.reply_redactor = redactor.for_replies()
        self.listed_models: list[str] = []  # the upstream's own list, read by `probe()`
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
        self._session: aiohttp.ClientSession | None = None
        self._draining: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open the pooled HTTP session; in the serving loop (an aiohttp session binds to it)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=self.settings.upstream_connect_timeout_seconds,
                sock_read=self.settings.idle_timeout_seconds + 1,  # our idle deadline fires first
            ),
        )

    async def probe(self) -> None:
        """Ask the upstream for its models once, at start-up, and say in one log line whether it
        answers and accepts our key (a wrong URL or key is otherwise found on the first call)."""
        url = self.url.removesuffix("/chat/completions") + "/models"
        where = self.redactor.redact(url)
        try:
            async with asyncio.timeout(self.settings.upstream_connect_timeout_seconds + 2):
                response = await self.session.get(
                    url,
                    headers=self.headers,
                    params=self.settings.upstream_query or None,
                    allow_redirects=False,
                )
                listing = await response.content.read(MODELS_LIST_BYTES) if response.ok else b""
                response.close()
        except (TimeoutError, aiohttp.ClientError) as error:
            logger.warning("upstream check: %s is unreachable (%s)", where, type(error).__name__)
            return
        if response.status in (401, 403):
            logger.warning("upstream check: %s refused our key (HTTP %d)", where, response.status)
        elif response.status >= 300:
            logger.info(
                "upstream check: %s answered HTTP %d (some servers have no /models)",
                where,
                response.status,
            )
        else:
            self.listed_models = model_ids(listing)
            logger.info(
                "upstream check: %s is reachable and accepts our key (%d models listed)",
                where,
                len(self.listed_models),
            )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("UpstreamResponder.start() was not awaited")
        return self._session

    async def aclose(self) -> None:
        for task in self._draining:
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _send(self, body: bytes) -> aiohttp.ClientResponse:
        """POST the request; an error or redirect status raises `UpstreamStatusError`."""
        response = await self.session.post(
            self.url,
            data=body,
            headers=self.headers,
            params=self.settings.upstream_query or None,
            allow_redirects=False,
        )
        if response.status >= 300:
            try:
                raw = await response.content.read(64 * 1024)
                try:
                    error_body: Any = json.loads(raw)
                except (ValueError, RecursionError):
                    # Whole (64 KB at most): redaction comes before any cut.
                    error_body = {"message": raw.decode("utf-8", "replace")}
            finally:
                response.close()
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            raise UpstreamStatusError(response.status, error_body, retry_after)
        return response

    def model_for(self, job: CompletionJob) -> str:
        return self.settings.upstream_model or job.request.model or "default"

    def served_models(self) -> list[str]:
        """The override when one is set, else what the upstream listed at start-up."""
        if self.settings.upstream_model:
            return [self.settings.upstream_model]
        return self.listed_models

    def request_body(self, job: CompletionJob) -> dict[str, Any]:
        body = {k: v for k, v in job.body.items() if k not in NOT_FORWARDED}
        body.update(model=self.model_for(job), messages=job.prompt_messages, stream=True)
        if self.wants_usage(job):
            body["stream_options"] = {"include_usage": True}
        return body

    @staticmethod
    def wants_usage(job: CompletionJob) -> bool:
        return job.request.include_usage or not job.request.stream

    def _release_later(self, response: aiohttp.ClientResponse) -> None:
        """Read the rest of the body in the background, then hand the connection back."""

        async def drain() -> None:
            try:
                async with asyncio.timeout(DRAIN_SECONDS):
                    async for _ in response.content.iter_any():
                        await asyncio.sleep(0)  # a flood after [DONE] must not hold the loop
                response.release()
            except BaseException:
                response.close()
                raise

        task = asyncio.ensure_future(drain())
        self._draining.add(task)
        task.add_done_callback(self._drained)

    def _drained(self, task: asyncio.Task[None]) -> None:
        self._draining.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed drain only closed a connection

    async def _first_speakable(
        self, events: UpstreamEvents, deadline: float
    ) -> list[ResponseEvent]:
        """Events up to and including the first with text or a tool call."""
        held: list[ResponseEvent] = []
        while True:
            batch = await events.next_events(deadline)
            if batch is None:
                if not events.done and not events.eof:
                    raise UpstreamError("upstream stream ended before any token")
                raise UpstreamEmptyReplyError("upstream finished without a word or a tool call")
            held.extend(batch)
            if any(is_speakable(event) for event in batch):
                return held
            if any(event.finish_reason for event in batch):
                raise UpstreamEmptyReplyError("upstream finished without a word or a tool call")

    async def _open(
        self, stack: AsyncExitStack, job: CompletionJob, deadline: float
    ) -> tuple[UpstreamEvents, list[ResponseEvent]]:
        """Connect and read up to the first token, retrying once within the deadline."""
        loop = asyncio.get_running_loop()
        body = json.dumps(self.request_body(job)).encode()  # once, whatever the attempts
        for attempt in (1, 2):
            attempt_stack = AsyncExitStack()
            try:
                response = await job.control.wait(self._send(body), deadline)
                attempt_stack.callback(response.close)  # a no-op once released
                events = UpstreamEvents(response, job.control, self.reply_redactor)
                first = await self._first_speakable(events, deadline)
                stack.push_async_exit(attempt_stack)
                return events, first
            except BaseException as error:
                await attempt_stack.aclose()
                if not isinstance(error, SupersededError | asyncio.CancelledError):
                    self.on_error(error_kind(error))
                if attempt == 2 or not retryable(error):
                    raise
                wait = error.retry_after if isinstance(error, UpstreamStatusError) else None
                if wait is not None and loop.time() + wait >= deadline:
                    raise  # honouring Retry-After would miss the first-token deadline
                if loop.time() >= deadline:
                    raise
                logger.warning("upstream attempt failed (%s); retrying once", type(error).__name__)
                if wait:
                    await job.control.wait(asyncio.sleep(wait), deadline)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(self, job: CompletionJob) -> AsyncIterator[ResponseEvent]:
        loop = asyncio.get_running_loop()
        idle = self.settings.idle_timeout_seconds
        total_deadline = loop.time() + self.settings.total_timeout_seconds
        async with AsyncExitStack() as stack:
            try:
                events, first = await self._open(
                    stack,
                    job,
                    min(loop.time() + self.settings.first_token_timeout_seconds, total_deadline),
                )
            except (Exception, TimeoutError) as error:
                raise client_error(error, self.settings, self.redactor) from None
            finished = any(event.finish_reason for event in first)
            for event in first:
                yield event
            while not (finished and not self.wants_usage(job)):
                now = loop.time()
                deadline = min(now + (USAGE_WAIT_SECONDS if finished else idle), total_deadline)
                try:
                    batch = await events.next_events(deadline)
                except TimeoutError:
                    if finished:
                        break  # the usage chunk never came: the reply itself is complete
                    if loop.time() >= total_deadline:
                        self.on_error("total_timeout")
                        raise UpstreamTimeoutError(
                            "upstream reply took longer than "
                            f"{self.settings.total_timeout_seconds:g}s"
                        ) from None
                    self.on_error("idle_timeout")
                    raise UpstreamTimeoutError(f"upstream went quiet for {idle:g}s") from None
                except (SupersededError, ShutdownError):
                    raise
                except APIError as error:
                    self.on_error(error_kind(error))
                    raise UpstreamError(self.redactor.cut(error.message, RELAYED_CHARS)) from None
                except Exception as error:
                    self.on_error("connection_lost")
                    raise UpstreamError(
                        f"connection to the upstream model was lost ({type(error).__name__})"
                    ) from None
                if batch is None:
                    if not (events.done or finished):
                        raise UpstreamError("upstream stream ended before it finished")
                    break
                for event in batch:
                    if finished and event.usage is None:
                        continue  # nothing after the finish chunk but usage is relayed
                    finished = finished or event.finish_reason is not None
                    yield event
            self._release_later(events.response)
            stack.pop_all()
