"""Request ids, log context and log formats.

`RequestContextMiddleware` is plain ASGI (Starlette's `BaseHTTPMiddleware` hides disconnects):
it honours an incoming `x-request-id` if it is a safe token (letters, digits, `._:-`, at most
128 characters; anything else is replaced, so a client cannot inject text into our logs),
echoes it in the response headers, makes it available to every log record through a context
variable, and counts requests by route and status. Context variables are the one module-level
state here, and they are per-request by design.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.metrics import Metrics

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
CONVERSATION_ID: ContextVar[str] = ContextVar("conversation_id", default="-")
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


LOG_VALUE_CHARS = 128


def log_safe(value: str | None, limit: int = LOG_VALUE_CHARS) -> str:
    """A request-derived value fit for one log line: control and other unprintable characters
    escaped (a newline cannot forge a line), at most `limit` characters (a 60 KB id is cut)."""
    if value is None:
        return "-"
    cut = value[:limit]
    if not cut.isprintable():
        cut = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in cut)
    return cut + ("…" if len(value) > limit else "")


def sanitise_id(value: str | None) -> str | None:
    """`value` if it is a safe identifier to log and echo, else None."""
    return value if value and _SAFE_ID.fullmatch(value) else None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = sanitise_id(incoming) or secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, str(status)).inc()
            REQUEST_ID.reset(token)


class ContextFilter(logging.Filter):
    """Adds `replica`, `request_id` and `conversation_id` to every record."""

    def __init__(self, replica: str = "-") -> None:
        super().__init__()
        self.replica = replica

    def filter(self, record: logging.LogRecord) -> bool:
        record.replica = self.replica
        record.request_id = REQUEST_ID.get()
        record.conversation_id = CONVERSATION_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; structured fields from `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "replica": getattr(record, "replica", "-"),
            "request_id": getattr(record, "request_id", "-"),
            "conversation_id": getattr(record, "conversation_id", "-"),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(replica)s [%(request_id)s] %(message)s"


def log_config(level: str, log_format: str, replica: str = "-") -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn and our loggers, text or JSON; every line
    names the replica, so logs gathered from several read apart."""
    formatter: dict[str, Any] = (
        {"()": "server.http.observability.JsonFormatter"}
        if log_format == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "server.http.observability.ContextFilter", "replica": replica}
        },
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            name: {"level": level.upper()}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
