"""Recording real calls (opt-in, `PERCEPTION_LLM_CAPTURE`), without slowing or risking a reply.

On the request path a finished completion only puts a snapshot (references, no copying, no
JSON) on a bounded queue — when the queue is full the call is dropped and counted. One writer
thread does the rest off the event loop: adds the instruction parts the reply's parse skipped,
applies the privacy setting and secret redaction, and writes batches in one transaction. When
the database is slow or down, batches are dropped and counted
(`perception_llm_capture_dropped_total`), serving goes on, and the log says so once per outage.
Retention by age and count runs in the same thread. Listeners (the playground's live Calls view)
are told the newest id after each batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from perception import Conversation, system_text_parts
from server.capture_privacy import (
    CapturePerception,
    reduce_parsed,
    reduce_prompt_messages,
)
from server.capture_store import CaptureStore, CaptureStoreError
from server.metrics import Metrics
from server.redaction import Redactor

logger = logging.getLogger(__name__)

# Request headers worth keeping (what Tavus' client says about itself); never credentials.
HEADER_ALLOW_LIST = frozenset(
    {
        "conversation-id",
        "conversation_id",
        "x-conversation-id",
        "content-type",
        "user-agent",
        "x-request-id",
        "x-prompt-template",
        "x-stainless-lang",
        "x-stainless-package-version",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "x-stainless-os",
        "x-stainless-arch",
        "x-stainless-retry-count",
        "x-stainless-read-timeout",
    }
)
BATCH_SIZE = 100
YIELD_SECONDS = 0.0005
SUMMARY_CHARS = 160  # of each perceived value, in the timeline's summary column
MAX_STORED_CHARS = 1_000_000  # per JSON column of a call; a bigger one is replaced by a note
PRUNE_EVERY_SECONDS = 60.0
_STOP = object()


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() in HEADER_ALLOW_LIST}


@dataclass
class CallSnapshot:
    """What a finished completion hands to the capture (taken on the event loop: references)."""

    request_id: str
    conversation_id: str | None
    started_at: float  # unix seconds
    template: str
    model: str
    stream: bool
    outcome: str
    ttft_ms: float | None
    total_ms: float
    prompt_tokens: int
    shared: bool
    error: str | None
    headers: dict[str, str]
    body: dict[str, Any]
    conversation: Conversation  # as parsed for the reply (without the instruction parts)
    prompt_messages: list[Any]
    dropped_turns: int
    perception_collapsed: bool
    reply_text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None


class CallCapture:
    def __init__(
        self,
        store: CaptureStore,
        metrics: Metrics,
        redactor: Redactor,
        *,
        perception: CapturePerception,
        queue_size: int,
        max_age_seconds: float,
        max_calls: int,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.redactor = redactor
        self.perception = perception
        self.max_age_seconds = max_age_seconds
        self.max_calls = max_calls
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: set[asyncio.Queue[int]] = set()
        self._outage = False
        self._ready = False
        self._schema_lock = threading.Lock()
        self.written = 0
        self.dropped = 0

    # --- the request path (event loop) ---

    def submit(self, snapshot: CallSnapshot) -> None:
        try:
            self._queue.put_nowait(snapshot)
        except queue.Full:
            self._drop(1, "queue_full")

    def listen(self) -> asyncio.Queue[int]:
        """A queue that receives the newest call id after each written batch."""
        listener: asyncio.Queue[int] = asyncio.Queue(maxsize=16)
        self._listeners.add(listener)
        return listener

    def unlisten(self, listener: asyncio.Queue[int]) -> None:
        self._listeners.discard(listener)

    def _publish(self, newest: int) -> None:
        for listener in self._listeners:
            if listener.full():
                continue  # a slow page gets the next one; it reloads the list anyway
            listener.put_nowait(newest)

    # --- lifecycle ---

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to `timeout`), then stop the writer."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):  # a full queue: the join below still bounds it
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        self.store.dispose()

    @property
    def ready(self) -> bool:
        return self._ready

    def ensure_schema(self) -> None:
        """Create or upgrade the schema once (any thread; CaptureStoreError while unreachable)."""
        with self._schema_lock:
            if not self._ready:
                self.store.upgrade()
                self._ready = True

    # --- the writer thread ---

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # unreachable now: the first write reports it
            self.ensure_schema()
        last_prune = 0.0
        while True:
            batch, stopping = self._next_batch()
            if batch:
                self._write(batch)
            if self._ready and time.monotonic() - last_prune > PRUNE_EVERY_SECONDS:
                last_prune = time.monotonic()
                self._prune()
            if stopping:
                return

    def _next_batch(self) -> tuple[list[CallSnapshot], bool]:
        try:
            first = self._queue.get(timeout=1.0)
        except queue.Empty:
            return [], False
        batch: list[CallSnapshot] = []
        item = first
        while True:
            if item is _STOP:
                return batch, True
            batch.append(item)
            if len(batch) >= BATCH_SIZE:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False

    def _write(self, batch: list[CallSnapshot]) -> None:
        try:
            self.ensure_schema()
            rows = []
            for snapshot in batch:
                rows.append(self.row(snapshot))
                # Hand the GIL back between rows: the event loop's streams come first (under
                # bursts of 32 streams a whole batch built at once cost them 5-20 ms at p50).
                time.sleep(YIELD_SECONDS)
            self.store.write(rows)
        except Exception as error:  # any database failure: drop, count, serve on
            self._drop(len(batch), "store_error")
            if not self._outage:
                self._outage = True
                detail = str(error).splitlines()[0] if str(error) else type(error).__name__
                logger.warning(
                    "capture: %s is unavailable (%s); calls are dropped until it is back",
                    self.store.url,
                    self.redactor.cut(detail, 300),
                )
            if isinstance(error, CaptureStoreError):
                self._ready = False
            return
        if self._outage:
            self._outage = False
            logger.info("capture: %s is back; writing calls again", self.store.url)
        self.written += len(batch)
        if self._loop is not None and not self._loop.is_closed():
            newest = self.store.newest_id()
            self._loop.call_soon_threadsafe(self._publish, newest)

    def _prune(self) -> None:
        try:
            removed = self.store.prune(self.max_age_seconds, self.max_calls)
        except Exception:  # retention waits for the next round; writing reports outages
            return
        if removed:
            logger.info("capture: retention removed %d old calls", removed)

    def _drop(self, count: int, reason: str) -> None:
        self.dropped += count
        self.metrics.capture_dropped.labels(reason).inc(count)

    def _json(self, value: Any) -> str:
        text = self.redactor.redact(json.dumps(value, ensure_ascii=False, default=str))
        if len(text) > MAX_STORED_CHARS:  # a 4 MB body, again and again, must not fill the disk
            return json.dumps({"withheld": f"too large to keep: {len(text)} characters"})
        return text

    def row(self, snapshot: CallSnapshot) -> dict[str, Any]:
        """The stored row (in the writer thread): full parse, privacy, redaction, JSON."""
        conversation = snapshot.conversation
        if not conversation.instructions:  # the reply's parse skips them; the store wants them
            parts = system_text_parts(conversation.messages)
            conversation = conversation.model_copy(update={"instructions": parts})
        parsed = reduce_parsed(conversation.model_dump(), self.perception)
        body = snapshot.body
        if self.perception != "full":
            body = {**body, "messages": conversation.messages, "perception_withheld": True}
        unknown = sorted({name for item in conversation.observations for name in item.extra})
        user_text = next(
            (
                m.get("content")
                for m in reversed(conversation.messages)
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            "",
        )
        return {
            "request_id": snapshot.request_id,
            "conversation_id": snapshot.conversation_id,
            "started_at": snapshot.started_at,
            "template": snapshot.template,
            "model": self.redactor.redact(snapshot.model),
            "stream": snapshot.stream,
            "mode": conversation.mode,
            "outcome": snapshot.outcome,
            "ttft_ms": snapshot.ttft_ms,
            "total_ms": snapshot.total_ms,
            "prompt_tokens": snapshot.prompt_tokens,
            "shared": snapshot.shared,
            "error": self.redactor.redact(snapshot.error) if snapshot.error else None,
            "issues": len(conversation.issues),
            "unknown_tags": ",".join(unknown),
            "user_text": self.redactor.cut(str(user_text or ""), 500),
            "perceived": self._json(
                {
                    name: self.redactor.cut(value, SUMMARY_CHARS)
                    for name, value in {**parsed["latest"], **parsed["latest"]["extra"]}.items()
                    if isinstance(value, str)
                }
            ),
            "headers": self._json(snapshot.headers),
            "request": self._json(body),
            "parsed": self._json(parsed),
            "prompt": self._json(
                {
                    "template": snapshot.template,
                    "prompt_tokens": snapshot.prompt_tokens,
                    "dropped_turns": snapshot.dropped_turns,
                    "perception_collapsed": snapshot.perception_collapsed,
                    "messages": reduce_prompt_messages(snapshot.prompt_messages, self.perception),
                }
            ),
            "reply": self._json(
                {
                    "text": snapshot.reply_text,
                    "tool_calls": snapshot.tool_calls,
                    "finish_reason": snapshot.finish_reason,
                }
            ),
        }
