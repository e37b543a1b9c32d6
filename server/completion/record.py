"""One log line per completion, written when it ends, whatever the outcome.

Carries what an operator needs to follow a call: request id, conversation id, model, template,
outcome (`Outcome`), time to first token and chunks relayed. Never the API keys or the
conversation text.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from server.completion.outcome import Outcome
from server.completion.reply_size import DEFAULT_MAX_REPLY_CHARS
from server.http.observability import log_safe
from server.metrics import Metrics
from server.responders.base import ResponseEvent
from server.wire.chunks import merge_tool_call

logger = logging.getLogger("perception_llm.requests")


CANCEL_REASONS = {
    Outcome.CANCELLED: "client_disconnect",
    Outcome.SUPERSEDED: "superseded",
    Outcome.SHUTDOWN: "shutdown",
}


@dataclass
class CompletionRecord:
    request_id: str
    conversation_id: str | None
    model: str
    template: str
    stream: bool
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    chunks: int = 0
    outcome: Outcome = Outcome.COMPLETED
    error: str | None = None
    prompt_tokens: int = 0
    shared: bool = False  # answered from an identical request's upstream generation
    emotion_repaired: bool = False  # the Phoenix-4 emotion tag was inserted or corrected
    # The reply as the client got it, kept only when calls are captured (server/capture/writer.py).
    capturing: bool = False
    reply_parts: list[str] = field(default_factory=list)
    reply_chars: int = 0
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    total_ms: float | None = None
    fallback: str | None = (
        None  # why the fallback line was spoken (server/completion/fallback_marker.py)
    )

    def emotion_repaired_now(self) -> None:
        self.emotion_repaired = True

    def ended_by(self, error: BaseException, message: str | None = None) -> None:
        """Record how `error` ended the completion (its outcome, and what to log of it)."""
        self.outcome = Outcome.for_error(error)
        if message is not None:
            self.error = message

    def capture_event(self, event: ResponseEvent) -> None:
        delta = event.delta or {}
        if isinstance(delta.get("content"), str) and self.reply_chars < DEFAULT_MAX_REPLY_CHARS:
            # Bounded: a streamed reply may run on for its whole deadline (issue 23).
            self.reply_chars += len(delta["content"])
            self.reply_parts.append(delta["content"])
        for fragment in delta.get("tool_calls") or ():
            if isinstance(fragment, dict):
                merge_tool_call(self.tool_calls, fragment)
        if event.finish_reason and self.finish_reason is None:
            self.finish_reason = event.finish_reason

    def spoke_fallback(self, message: str, reason: str) -> None:
        self.outcome, self.error, self.fallback = Outcome.FALLBACK, message, reason

    def token_sent(self) -> None:
        self.chunks += 1
        if self.first_token is None:
            self.first_token = time.perf_counter()

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.started) * 1000

    def finish(self, metrics: Metrics | None = None) -> None:
        """Log the one line for this completion and record its metrics."""
        total_seconds = time.perf_counter() - self.started
        self.total_ms = total_seconds * 1000
        if metrics is not None:
            metrics.completions.labels(self.outcome).inc()
            metrics.duration.observe(total_seconds)
            metrics.prompt_tokens.observe(self.prompt_tokens)
            if self.first_token is not None:
                metrics.time_to_first_token.observe(self.first_token - self.started)
            if self.shared:
                metrics.upstream_calls_saved.inc()
            reason = CANCEL_REASONS.get(self.outcome)
            if reason is not None:
                metrics.cancellations.labels(reason).inc()
        self.log(total_seconds * 1000)

    def log(self, total: float) -> None:
        ttft = "-" if self.ttft_ms is None else f"{self.ttft_ms:.1f}"
        model, template = log_safe(self.model), log_safe(self.template)
        error = log_safe(self.error, 500) if self.error else None
        fields = {
            "event": "completion",
            "model": model,
            "template": template,
            "stream": self.stream,
            "outcome": self.outcome,
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 2),
            "total_ms": round(total, 2),
            "chunks": self.chunks,
            "prompt_tokens": self.prompt_tokens,
            "error": error,
            "shared": self.shared,
        }
        logger.info(
            "completion request_id=%s conversation_id=%s model=%s template=%s stream=%s "
            "outcome=%s ttft_ms=%s total_ms=%.1f chunks=%d%s%s",
            self.request_id,
            log_safe(self.conversation_id),
            model,
            template,
            self.stream,
            self.outcome,
            ttft,
            total,
            self.chunks,
            " shared=true" if self.shared else "",
            f" error={error!r}" if error else "",
            extra={"fields": fields},
        )
