"""Request limits: body size, messages, characters, tools, concurrent completions.

The body limit is a plain ASGI middleware (Starlette's `BaseHTTPMiddleware` would hide client
disconnects): it refuses a declared `Content-Length` over the limit before reading anything and
counts bytes as they arrive otherwise, so an oversized body is never buffered. The concurrency
gate refuses with 429 and `Retry-After` instead of queueing: a queued voice turn is a late one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perception import message_text
from server.errors import InvalidRequestError, PayloadTooLargeError, RateLimitError, error_body
from server.settings import Settings
from server.wire.schemas import ChatCompletionRequest


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.reject(send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self.too_large()
            return message

        await self.app(scope, counted_receive, send)

    def too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"The request body is larger than {self.max_bytes} bytes "
            "(PERCEPTION_LLM_MAX_BODY_BYTES).",
            code="request_too_large",
        )

    async def reject(self, send: Send) -> None:
        error = self.too_large()
        body = json.dumps(error_body(error.message, error.error_type, None, error.code)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),  # the unread body would desynchronise the connection
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def check_request_limits(
    request: ChatCompletionRequest, body: dict[str, Any], settings: Settings
) -> None:
    """400 for a request over the tool limit. The message and character limits are checked
    once, before validation (`check_message_limits`): a second pass here walked every message
    again per request."""
    if request.tools is not None and len(request.tools) > settings.max_tools:
        raise InvalidRequestError(
            f"{len(request.tools)} tools is more than the limit of {settings.max_tools} "
            "(PERCEPTION_LLM_MAX_TOOLS).",
            param="tools",
            code="too_many_tools",
        )


def check_message_limits(messages: list[Any], settings: Settings) -> None:
    """400 for more messages, or a longer message, than the settings allow (every route that
    parses messages checks this before parsing them)."""
    if len(messages) > settings.max_messages:
        raise InvalidRequestError(
            f"{len(messages)} messages is more than the limit of {settings.max_messages} "
            "(PERCEPTION_LLM_MAX_MESSAGES).",
            param="messages",
            code="too_many_messages",
        )
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        text = message_text(content) or ""
        if len(text) > settings.max_message_chars:
            raise InvalidRequestError(
                f"Message {index} has {len(text)} characters, more than the limit of "
                f"{settings.max_message_chars} (PERCEPTION_LLM_MAX_MESSAGE_CHARS).",
                param=f"messages.[{index}].content",
                code="message_too_long",
            )


class LoopLagMonitor:
    """How late the event loop runs its timers: the measure of an overloaded process.

    A timer is due every `interval`; how late it fires is the lag, smoothed over the last few
    ticks (so one long parse does not trip it). While the smoothed lag is over `limit`, the
    process is behind: new completions are refused (429) until it catches up, so
    streams in flight keep their pace and `/healthz` keeps answering. A fixed cap on streams
    cannot do that, because what a stream costs depends on how fast its upstream talks.
    """

    def __init__(self, limit: float, interval: float = 0.05) -> None:
        self.limit = limit
        self.interval = interval
        self.lag = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._schedule(loop, loop.time() + self.interval)

    def _schedule(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        self._handle = loop.call_at(due, self._tick, loop, due)

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = loop.time()
        self.lag += (now - due - self.lag) * 0.3  # an exponential moving average
        self._schedule(loop, now + self.interval)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    @property
    def overloaded(self) -> bool:
        return self.lag > self.limit


class ConcurrencyGate:
    """Counts in-flight completions; refuses past the cap, or while the loop is behind."""

    def __init__(self, limit: int, lag: LoopLagMonitor | None = None) -> None:
        self.limit = limit
        self.lag = lag
        self.active = 0

    def refusal(self) -> RateLimitError | None:
        """Why a new completion would be refused now, or None when it is welcome."""
        if self.lag is not None and self.lag.overloaded and self.active > 0:
            return RateLimitError(
                f"The server is behind by {self.lag.lag * 1000:.0f} ms (over "
                "PERCEPTION_LLM_MAX_LOOP_LAG_SECONDS); retry shortly.",
                code="server_overloaded",
                headers={"Retry-After": "1"},
            )
        if self.active >= self.limit:
            return RateLimitError(
                f"The server is at its limit of {self.limit} concurrent completions "
                "(PERCEPTION_LLM_MAX_CONCURRENT_STREAMS); retry shortly.",
                code="too_many_concurrent_streams",
                headers={"Retry-After": "1"},
            )
        return None

    def enter(self) -> None:
        refusal = self.refusal()
        if refusal is not None:
            raise refusal
        self.active += 1

    def leave(self) -> None:
        self.active -= 1
