"""uvicorn's HTTP protocol with the connection-level guards it lacks: read deadlines and caps.

uvicorn (httptools) has no deadline for receiving headers or a body and no cap on header size:
1,000 connections sending headers at a byte a second stayed open for ever, and 40 connections
sending 50 MiB header values took the process from 86 MiB to 2.4 GiB. A reverse proxy in front
would fix it, but a server must be safe as the README's one command starts it. So the protocol
class itself (what uvicorn instantiates per connection, `uvicorn.run(http=...)`) enforces:

- a header deadline from the connection's start, or from the first byte of each later request
  on a kept-alive connection (idle keep-alive is uvicorn's own `timeout_keep_alive`);
- a body deadline from the end of the headers to the end of the body;
- a cap on the bytes read before the headers end (request line + headers): 431 beyond it, so
  httptools never buffers more than one read past it;
- a cap on open connections per process: as it is reached, a connection that has not sent a
  complete request is closed to make room, the oldest of the client holding most of them
  (`server/http/connection_shares.py`); only when every connection is busy with a request is a new
  one refused, and a few past the cap are still let in to be answered `/healthz` (a load
  balancer's probe must succeed however full the server is) and 503 for anything else.

`GET /healthz` is answered here, when its headers are complete, without an ASGI task; the
parser's later callbacks for that request are then ignored (uvicorn's own would look for the
request's cycle, fail, and log "Invalid HTTP request received." for every probe, issue 21).

This subclasses a private uvicorn class: pyproject pins uvicorn to the minor version the suite
ran against, and tests/test_protocol_contract.py fails loudly when an attribute or callback
named in `UVICORN_ATTRIBUTES` changes.

The limits come from the app's settings (its `Services`), found through uvicorn's loaded app,
so the same class works for `serve`, `--workers` and the in-process test server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Hashable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.errors import RateLimitError
from server.services import Services

logger = logging.getLogger(__name__)
# What this class relies on in HttpToolsProtocol (checked by tests/test_protocol_contract.py).
UVICORN_ATTRIBUTES = (
    "app",
    "loop",
    "transport",
    "parser",
    "url",
    "client",
    "cycle",
    "connections",
    "pipeline",
)
UVICORN_CALLBACKS = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
)
# Connections let in past the cap when none can be evicted; they are answered /healthz only.
HEALTH_RESERVE = 32
HEALTHY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n"
    b'connection: close\r\n\r\n{"status":"ok"}'
)


COMPLETION_PATHS = frozenset({b"/v1/chat/completions", b"/chat/completions"})


def _services_of(app: Any) -> Services:
    """The services of the FastAPI app inside uvicorn's middleware wrappers."""
    for _ in range(16):
        found = getattr(getattr(app, "state", None), "services", None)
        if isinstance(found, Services):
            return found
        app = getattr(app, "app", None)
        if app is None:
            break
    raise RuntimeError("GuardedHttpProtocol needs an app built by create_app")


def _too_many_requests(error: RateLimitError) -> bytes:
    body = json.dumps(error.body(), separators=(",", ":")).encode()
    return (
        b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )


class GuardedHttpProtocol(HttpToolsProtocol):
    """See the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._services = _services_of(self.app)
        settings = self._services.settings
        self.header_timeout: float = settings.header_timeout_seconds
        self.body_timeout: float = settings.body_timeout_seconds
        self.max_header_bytes: int = settings.max_header_bytes
        self.max_connections: int = settings.max_connections
        self._shares = self._services.connection_shares
        self._client_key: Hashable = None
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._in_headers = True  # reading a request line and headers (or waiting for one)
        self._answered = False  # answered here: the parser's later callbacks are not uvicorn's
        self._over_cap = False  # let in past the cap: /healthz only

    def _arm(self, seconds: float, stage: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, stage)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, stage: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        logger.info("closing a connection that did not send its %s in time", stage)
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
        else:
            self._refuse(
                b"408 Request Timeout", b"Request %s not received in time." % stage.encode()
            )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._make_room():
            report = self._services.connection_report
            if len(self.connections) > self.max_connections + HEALTH_RESERVE:
                report.count(self.loop, self.max_connections, evicted=False)
                self.connections.discard(self)
                transport.abort()
                return
            self._over_cap = True
        self._client_key = self._shares.client_key(self.client)
        self._shares.add(self, self._client_key)
        self._arm(self.header_timeout, "headers")

    def _make_room(self) -> bool:
        victim = self._shares.victim()
        if victim is None:
            return False
        self._services.connection_report.count(self.loop, self.max_connections, evicted=True)
        victim.evict()
        return True

    def evict(self) -> None:
        """Close this connection (it has no complete request) to admit a newer one."""
        self._shares.discard(self)
        self.connections.discard(self)  # counted out now: its `connection_lost` comes later
        self._disarm()
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._shares.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        if self._in_headers:
            if self._deadline is None:
                self._arm(self.header_timeout, "headers")  # a new request on a kept-alive one
            # Counted before parsing: a whole oversized header block in one read must not pass.
            end = data.find(b"\r\n\r\n")
            if self._header_bytes + (len(data) if end < 0 else end + 4) > self.max_header_bytes:
                self._refuse_large_headers()
                return
        headers_were_open = self._in_headers
        super().data_received(data)
        if headers_were_open and self._in_headers and not self.transport.is_closing():
            self._header_bytes += len(data)

    def _refuse_large_headers(self) -> None:
        self._disarm()
        self._refuse(b"431 Request Header Fields Too Large", b"Request headers too large.")

    def _refuse(self, status: bytes, message: bytes) -> None:
        self._answered = True
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, len(message), message)
        )
        self.transport.close()

    def on_message_begin(self) -> None:
        if self._answered:
            return
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        if self._answered:
            return
        self._in_headers = False
        method, path = self.parser.get_method(), self.url.partition(b"?")[0]
        # With a response still in flight (a pipelined request), the app answers in order.
        idle = self.cycle is None or self.cycle.response_complete
        if path == b"/healthz" and method == b"GET" and idle:
            self._answer_health_check()
            return
        if self._over_cap:
            self._disarm()
            self._refuse(b"503 Service Unavailable", b"The server is at its connection limit.")
            return
        refusal = self._completion_refusal() if path in COMPLETION_PATHS else None
        if refusal is not None and method == b"POST" and idle:
            self._disarm()
            self._answered = True
            self.transport.write(_too_many_requests(refusal))
            self.transport.close()  # the body is never read: the connection cannot be reused
            return
        self._arm(self.body_timeout, "body")
        super().on_headers_complete()

    def _completion_refusal(self) -> RateLimitError | None:
        # Refusing here, before an ASGI task exists or the body is read, costs a tenth of a
        # refusal through the app: under overload, shedding must be cheaper than serving, or
        # clients retrying 429s in a loop keep the process saturated.
        return self._services.gate.refusal()

    def _answer_health_check(self) -> None:
        # Answered here, in the callback that read the request, without an ASGI task: a load
        # balancer's check then costs one pass of the event loop instead of several, so it
        # stays fast while the loop is busy with a thousand streams (and still fails when the
        # loop itself is stuck, which is what it should detect).
        self._disarm()
        self._answered = True
        self.transport.write(HEALTHY)
        self.transport.close()

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._answered:
            return
        self._disarm()
        self._shares.discard(self)  # a complete request: no longer evictable
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._in_headers = True  # the next bytes start a new request (keep-alive owns idle time)
        self._header_bytes = 0
        if not self.transport.is_closing():
            self._shares.add(self, self._client_key)  # idle between requests: evictable again
        super().on_response_complete()
