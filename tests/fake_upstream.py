"""A scripted OpenAI-compatible upstream on loopback: real sockets, real HTTP/1.1, real SSE.

Each request pops the next `Reply` from the script (or repeats the last one). A reply can
delay, stream data lines, send raw garbage, drop the connection mid-stream, never start, or
answer with an HTTP error. The server records every request (headers, query, JSON body) and
the moment its client went away, so tests can assert what was forwarded and how fast an
abandoned request is closed. Scripted delays are the behaviour under test, not synchronisation.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    status: int = 200
    steps: list[tuple[str, Any]] = field(
        default_factory=list
    )  # ("data", obj|str), ("wait", s), ("raw", bytes), ("drop", None), ("hang", None),
    # ("flood", bytes): the same bytes again and again, as fast as read, until the client leaves
    error: dict[str, Any] | None = None  # body for status >= 300
    done: bool = True  # send data: [DONE] at the end
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    json_body: Any = None  # answer 200 with this JSON instead of a stream (e.g. a /models list)


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    connection: int  # which TCP connection carried it (to see pooling)
    gone: threading.Event = field(default_factory=threading.Event)
    gone_at: float | None = None  # time.monotonic() when the client closed the connection
    arrived_at: float = field(default_factory=time.monotonic)
    flooded_bytes: int = 0  # bytes a ("flood", …) step sent before the client went away


def chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    *,
    model: str = "up-model",
    usage: dict[str, int] | None = None,
    choices: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
    }
    body["choices"] = (
        [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []
    )
    if usage is not None:
        body["usage"] = usage
    return body


def text_reply(
    *words: str, delay: float = 0.0, gap: float = 0.0, usage: dict[str, int] | None = None
) -> Reply:
    steps: list[tuple[str, Any]] = []
    if delay:
        steps.append(("wait", delay))
    steps.append(("data", chunk({"role": "assistant", "content": ""})))
    for i, word in enumerate(words):
        if gap and i:
            steps.append(("wait", gap))
        steps.append(("data", chunk({"content": word})))
    steps.append(("data", chunk({}, "stop")))
    if usage is not None:
        steps.append(("data", chunk(usage=usage, choices=False)))
    return Reply(steps=steps)


MODEL_LIST = Reply(json_body={"object": "list", "data": [{"id": "up-model", "object": "model"}]})
NOT_FOUND = Reply(status=404, error={"message": "Not found", "type": "invalid_request_error"})


class FakeUpstream:
    def __init__(self, record: bool = True) -> None:
        self.record = record
        self.script: list[Reply] = []
        self.received: list[Received] = []
        self.gets: list[Received] = []  # GETs answered without the script (see _unscripted)
        self._arrived = threading.Condition()
        self.connections = 0
        self._open: set[int] = set()  # connections neither side has closed yet
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> Received:
        """Block until `count` requests have arrived; return the last of them."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise TimeoutError(f"only {len(self.received)} of {count} requests arrived")
            return self.received[count - 1]

    def _unscripted(self, request: Received) -> bool:
        """A GET the script does not answer itself (it answers a GET only with a JSON or error
        reply): answered like OpenAI — `/models` lists the fake's one model, anything else is
        404 — and kept apart from `received`, which holds the scripted calls."""
        upcoming = self.script[0] if self.script else None
        scripted = upcoming is not None and (
            upcoming.json_body is not None or upcoming.status >= 300
        )
        return request.method == "GET" and not scripted

    def next_reply(self) -> Reply:
        if len(self.script) > 1:
            return self.script.pop(0)
        return self.script[0] if self.script else text_reply("ok")

    async def _read_request(self, reader: asyncio.StreamReader, connection: int) -> Received | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        url = urlsplit(target)
        return Received(
            method,
            url.path,
            dict(parse_qsl(url.query)),
            headers,
            json.loads(raw) if raw else None,
            connection,
        )

    async def _watch_close(self, reader: asyncio.StreamReader, request: Received) -> None:
        try:
            while await reader.read(1024):
                pass
        except ConnectionError:
            pass
        self._mark_gone(request)

    def _mark_gone(self, request: Received) -> None:
        if not request.gone.is_set():
            request.gone_at = time.monotonic()
            self._open.discard(request.connection)  # the peer closed it, whatever we do next
            request.gone.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        self._open.add(connection)
        try:
            while True:
                request = await self._read_request(reader, connection)
                if request is None:
                    return
                if self._unscripted(request):
                    self.gets.append(request)
                    answer = MODEL_LIST if request.path.endswith("/models") else NOT_FOUND
                    if not await self._respond(reader, writer, request, answer):
                        return
                    continue
                if self.record:
                    with self._arrived:
                        self.received.append(request)
                        self._arrived.notify_all()
                if not await self._respond(reader, writer, request, self.next_reply()):
                    return
        finally:
            self._open.discard(connection)
            writer.close()

    async def _respond(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: Received,
        reply: Reply,
    ) -> bool:
        """Send `reply`; False when the connection must be closed afterwards."""
        if reply.json_body is not None:
            body = json.dumps(reply.json_body).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            return True
        if reply.status >= 300:
            body = json.dumps(
                {"error": reply.error or {"message": "boom", "type": "server_error"}}
            ).encode()
            extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers.items())
            writer.write(
                f"HTTP/1.1 {reply.status} Error\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
                + body
            )
            await writer.drain()
            return True
        watcher = asyncio.ensure_future(self._watch_close(reader, request))
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            for kind, value in reply.steps:
                if kind == "wait":
                    await asyncio.sleep(value)
                elif kind == "hang":
                    await writer.drain()
                    await watcher  # until the client goes away
                    return False
                elif kind == "drop":
                    writer.transport.abort()
                    return False
                elif kind == "flood":
                    frame = f"{len(value):x}\r\n".encode() + value + b"\r\n"
                    burst = frame * max(1, 65536 // len(frame))
                    while not watcher.done():
                        writer.write(burst)
                        request.flooded_bytes += len(burst)
                        await writer.drain()
                        await asyncio.sleep(0)  # let the close watcher run
                    return False
                else:
                    payload = (
                        value
                        if kind == "raw"
                        else (
                            "data: "
                            + (value if isinstance(value, str) else json.dumps(value))
                            + "\n\n"
                        ).encode()
                    )
                    writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
                await writer.drain()
            if reply.done:
                payload = b"data: [DONE]\n\n"
                writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            # Stop watching before the body's last bytes: once the client has the whole
            # response it may send its next request, and the watcher must not eat those bytes.
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if request.gone.is_set():
                return False
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        except ConnectionError:
            self._mark_gone(request)  # a failed write is the client leaving, too
            return False
        finally:
            watcher.cancel()

    def run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    @contextmanager
    def serving(self) -> Iterator[FakeUpstream]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server = self._server

            async def close() -> None:
                server.close()
                pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(5)


def main() -> None:
    """`python -m tests.fake_upstream [WORDS] [GAP_SECONDS] [FIRST_TOKEN_SECONDS]`: serve a fixed
    reply forever (for benchmarks); it keeps no record of requests, so memory stays flat."""
    import sys

    words = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    gap = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    fake = FakeUpstream(record=False)
    fake.script = [text_reply(*[f"w{i} " for i in range(words)], gap=gap, delay=delay)]
    with fake.serving():
        print(f"fake upstream on {fake.base_url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
