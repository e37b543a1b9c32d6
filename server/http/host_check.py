"""DNS-rebinding defence: a keyless loopback server answers only loopback `Host` names.

A web page the user merely visits can point its own domain at 127.0.0.1 (DNS rebinding) and
then read this server as same-origin: with `--capture`, `GET /v1/calls` returns the captured
speech and screen text (issue 23). The browser still sends the attacker's name in `Host`, so a
server without a key refuses every name but `localhost`, `*.localhost`, loopback addresses and
`PERCEPTION_LLM_ALLOWED_HOSTS`. A server with a key needs no such check (the page cannot know
the key), nor does one started `--insecure` on a public interface (it chose to answer anyone).

Plain ASGI (Starlette's `TrustedHostMiddleware` cuts `[::1]:8000` at the first colon).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from server.settings import is_loopback


def host_name(header: str) -> str:
    """The name in a `Host` header, without its port, lower-cased (`[::1]:80` -> `::1`)."""
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 literal: only a port may follow its bracket
        literal, bracket, port = header[1:].partition("]")
        port_only = port[:1] == ":" and (port[1:].isdigit() or not port[1:])
        return literal if bracket and (port_only or not port) else header
    name, _, port = header.rpartition(":")
    return name if header.count(":") == 1 and (port.isdigit() or not port) else header


def host_allowed(header: str, extra: frozenset[str]) -> bool:
    name = host_name(header).rstrip(".")
    return name in extra or name.endswith(".localhost") or is_loopback(name)


class LoopbackHostMiddleware:
    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.extra = frozenset(host.strip().lower().rstrip(".") for host in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((value for name, value in scope["headers"] if name == b"host"), b"")
        if host_allowed(host.decode("latin-1"), self.extra):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": {
                    "message": "This server answers only loopback host names; add yours to "
                    "PERCEPTION_LLM_ALLOWED_HOSTS or set PERCEPTION_LLM_API_KEY.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "host_not_allowed",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
