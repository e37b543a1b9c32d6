"""One log line per completion, written when it ends, whatever the outcome.

Carries what an operator needs to follow a call: request id, conversation id, model, template,
outcome (completed / cancelled / superseded / failed / fallback), time to first token and chunks
relayed. Never the API keys or the conversation text.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

logger = logging.getLogger("perception_llm.requests")


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
    outcome: str = "completed"
    error: str | None = None

    def token_sent(self) -> None:
        self.chunks += 1
        if self.first_token is None:
            self.first_token = time.perf_counter()

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.started) * 1000

    def log(self) -> None:
        ttft = "-" if self.ttft_ms is None else f"{self.ttft_ms:.1f}"
        total = (time.perf_counter() - self.started) * 1000
        logger.info(
            "completion request_id=%s conversation_id=%s model=%s template=%s stream=%s "
            "outcome=%s ttft_ms=%s total_ms=%.1f chunks=%d%s",
            self.request_id,
            self.conversation_id or "-",
            self.model,
            self.template,
            self.stream,
            self.outcome,
            ttft,
            total,
            self.chunks,
            f" error={self.error!r}" if self.error else "",
        )
