"""Server-sent events from bytes: the one inbound SSE decoder (after openai-python's `SSEDecoder`).

Pure and incremental: `feed(bytes)` returns the events completed by those bytes, whatever the
chunking, so any split of the same bytes gives the same events (a test checks it). Lines end in
LF, CRLF or CR; the `data:` lines of one event are joined with LF; an event is dispatched at a
blank line; comments (`: keep-alive`) and unknown fields are counted but produce no event.
The work is linear in the bytes: a partial line is kept as a list of pieces and joined once,
when its end arrives, so a megabyte line fed a byte at a time costs no more than one feed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DONE = "[DONE]"  # the OpenAI stream's last data payload
MAX_EVENT_BYTES = 8 * 1024 * 1024  # one event's data; a bigger one is garbage, not a chunk


class OversizedEventError(ValueError):
    """An SSE line or event grew past `MAX_EVENT_BYTES`."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None


@dataclass
class SSEDecoder:
    max_bytes: int = MAX_EVENT_BYTES
    comments: int = 0  # lines that were comments or blank outside an event: not progress
    _partial: list[bytes] = field(default_factory=list)
    _partial_bytes: int = 0
    _pending_cr: bool = False  # the last chunk ended in `\r`: a following `\n` belongs to it
    _data: list[str] = field(default_factory=list)
    _data_bytes: int = 0
    _event: str | None = None
    _id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by `chunk`."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = chunk.endswith(b"\r")
        if b"\r" in chunk:  # rare: normalise line ends (`\r\n` and lone `\r` count as one)
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        events: list[SSEEvent] = []
        if len(lines) == 1:
            self._keep_partial(chunk)
            return events
        if self._partial:
            lines[0] = b"".join([*self._partial, lines[0]])
            self._partial.clear()
            self._partial_bytes = 0
        for line in lines[:-1]:
            event = self._line(line)
            if event is not None:
                events.append(event)
        self._keep_partial(lines[-1])
        return events

    def flush(self) -> list[SSEEvent]:
        """At the end of the body: the last event, if its blank line never came."""
        events = []
        if self._partial:
            line = b"".join(self._partial)
            self._partial.clear()
            event = self._line(line)
            if event is not None:
                events.append(event)
        event = self._line(b"")
        if event is not None:
            events.append(event)
        return events

    def _keep_partial(self, piece: bytes) -> None:
        if piece:
            self._partial.append(piece)
            self._partial_bytes += len(piece)
            if self._partial_bytes > self.max_bytes:
                raise OversizedEventError(f"an SSE line is over {self.max_bytes} bytes")

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            if not self._data and self._event is None:
                self.comments += 1
                return None
            event = SSEEvent("\n".join(self._data), self._event, self._id)
            self._data.clear()
            self._data_bytes = 0
            self._event = None
            return event
        if raw.startswith(b":"):
            self.comments += 1
            return None
        name, _, value = raw.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data_bytes += len(value)
            if self._data_bytes > self.max_bytes:
                raise OversizedEventError(f"an SSE event is over {self.max_bytes} bytes")
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            self._id = value.decode("utf-8", "replace")
        else:
            self.comments += 1  # `retry:` and unknown fields: ignored, as the spec says
        return None
