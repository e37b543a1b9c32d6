"""Recording real calls (opt-in, `PERCEPTION_LLM_CAPTURE`), without slowing or risking a reply.

On the request path a finished completion only puts a snapshot (references, no copying, no
JSON) on a bounded queue — when the queue is full the call is dropped and counted. One writer
thread does the rest off the event loop: adds the instruction parts the reply's parse skipped,
applies the privacy setting, secret redaction and the replica's name (server/capture/rows.py),
and writes batches
in one transaction, row by row when the database refuses one (a bad row must not lose the
others); the total size is capped (`PERCEPTION_LLM_CAPTURE_MAX_MEGABYTES`). When
the database is slow or down, batches are dropped and counted
(`perception_llm_capture_dropped_total`), serving goes on, and the log says so once per outage.
Retention by age and count runs in the same thread. Listeners (the playground's live Calls view)
are told the newest id after each batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from typing import Any

from perception import CapturePerception
from server.capture.rows import CallSnapshot, call_row
from server.capture.store import CaptureStore, CaptureStoreError, is_outage
from server.metrics import Metrics
from server.redaction import Redactor

logger = logging.getLogger(__name__)

BATCH_SIZE = 100
YIELD_SECONDS = 0.0005
PRUNE_EVERY_SECONDS = 60.0
_STOP = object()


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
        replica: str = "-",  # written into every row: which replica served the call
        max_bytes: int | None = None,
    ) -> None:
        self.store = store
        self.replica = replica
        self.metrics = metrics
        self.redactor = redactor
        self.perception = perception
        self.max_age_seconds = max_age_seconds
        self.max_calls = max_calls
        self.max_bytes = max_bytes
        self._bytes_since_prune = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: set[asyncio.Queue[int]] = set()
        self._outage = False
        self._ready = False
        self._schema_lock = threading.Lock()
        self.written = self.dropped = 0

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
        """Write what is queued (up to `timeout`), then stop the writer; what could not be
        written in time is counted and logged (SIGTERM under load lost 35 of 36 calls without
        a word, issue 23)."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):  # a full queue: the join below still bounds it
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            left = sum(1 for item in list(self._queue.queue) if item is not _STOP)
            self._drop(left, "shutdown")
            logger.warning(
                "capture: %d calls were still queued when the grace period ended; not written",
                left,
            )
            return  # the writer still holds the store; the process is ending
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
            # Pruned each minute, and sooner when a tenth of the size cap was written since.
            heavy = self.max_bytes is not None and self._bytes_since_prune > self.max_bytes // 10
            if self._ready and (heavy or time.monotonic() - last_prune > PRUNE_EVERY_SECONDS):
                self._bytes_since_prune = 0
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
                rows.append(call_row(snapshot, self.redactor, self.perception, self.replica))
                # Hand the GIL back between rows: the event loop's streams come first (under
                # bursts of 32 streams a whole batch built at once cost them 5-20 ms at p50).
                time.sleep(YIELD_SECONDS)
            try:
                self.store.write(rows)
            except Exception as error:
                if is_outage(error):
                    raise
                self._write_one_by_one(rows)  # one bad row must not lose the batch
                return
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
        self._written(rows)

    def _write_one_by_one(self, rows: list[dict[str, Any]]) -> None:
        failures = self.store.write_each(rows)
        if failures:
            self._drop(len(failures), "bad_row")
            logger.warning(
                "capture: %d of %d calls could not be stored (%s)",
                len(failures),
                len(rows),
                self.redactor.cut(failures[0], 300),
            )
        self._written(rows[: len(rows) - len(failures)])

    def _written(self, rows: list[dict[str, Any]]) -> None:
        self.written += len(rows)
        self._bytes_since_prune += sum(row["stored_bytes"] for row in rows)
        if rows and self._loop is not None and not self._loop.is_closed():
            newest = self.store.newest_id()
            self._loop.call_soon_threadsafe(self._publish, newest)

    def _prune(self) -> None:
        try:
            removed = self.store.prune(self.max_age_seconds, self.max_calls, self.max_bytes)
        except Exception:  # retention waits for the next round; writing reports outages
            return
        if removed:
            logger.info("capture: retention removed %d old calls", removed)

    def _drop(self, count: int, reason: str) -> None:
        self.dropped += count
        self.metrics.capture_dropped.labels(reason).inc(count)
