"""How an upstream failure is told apart and what our client sees of it.

`UpstreamStatusError` carries an HTTP error or redirect status; `client_error` turns any failure
into the client-facing `APIError` (an upstream 4xx keeps its status, by class; nothing of our
secrets survives `Redactor`); `error_kind` labels it for metrics; `retryable` says whether one
more attempt within the first-token deadline makes sense.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import aiohttp

from server.errors import (
    APIError,
    SupersededError,
    UpstreamEmptyReplyError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnreachableError,
    error_for_status,
)
from server.redaction import Redactor
from server.settings import Settings


class UpstreamStatusError(Exception):
    """The upstream answered with an HTTP error (or redirect) status."""

    def __init__(self, status_code: int, body: Any, retry_after: float | None = None) -> None:
        super().__init__(f"upstream status {status_code}")
        self.status_code = status_code
        self.body = body
        self.retry_after = retry_after


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds from now (delta-seconds or an HTTP date); None when absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_detail(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        detail = body.get("error", body)
        if isinstance(detail, dict):
            return detail
    return {}


RELAYED_CHARS = 500  # of an upstream's own words in an error we relay


def client_error(error: BaseException, settings: Settings, redactor: Redactor) -> APIError:
    """What the client sees for an upstream failure (never one of our secrets)."""
    if isinstance(error, UpstreamError):  # built from the upstream's words: redact them
        return type(error)(
            redactor.cut(error.message, RELAYED_CHARS),
            param=error.param,
            code=error.code,
            headers=error.headers,
        )
    if isinstance(error, APIError):
        return error
    if isinstance(error, UpstreamStatusError):
        if 300 <= error.status_code < 400:
            return UpstreamError(
                f"upstream answered with a redirect (HTTP {error.status_code}); redirects are "
                "not followed: set PERCEPTION_LLM_UPSTREAM_BASE_URL to the final URL"
            )
        detail = _error_detail(error.body)
        message = redactor.cut(str(detail.get("message") or f"HTTP {error.status_code}"), 500)
        if 400 <= error.status_code < 500:  # relayed with the same status, by class
            # Every field the upstream wrote is redacted: a key echoed in `param`, `code` or
            # `type` reached clients before (issue 23).
            param, code, kind = (detail.get(name) for name in ("param", "code", "type"))
            return error_for_status(error.status_code)(
                f"upstream rejected the request: {message}",
                param=redactor.cut(param, 200) if isinstance(param, str) else None,
                code=redactor.cut(code, 200) if isinstance(code, str) else None,
                error_type=redactor.cut(str(kind or "invalid_request_error"), 200),
            )
        return UpstreamError(f"upstream failed with status {error.status_code}: {message}")
    if isinstance(error, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return UpstreamTimeoutError(
            f"upstream gave no token within {settings.first_token_timeout_seconds:g}s"
        )
    if isinstance(error, aiohttp.ClientConnectorError):
        return UpstreamUnreachableError("cannot reach the upstream model")
    return UpstreamError(f"connection to the upstream model failed ({type(error).__name__})")


def error_kind(error: BaseException) -> str:
    """A short label for metrics: status_5xx, timeout, connect, malformed, ..."""
    if isinstance(error, UpstreamStatusError):
        return f"status_{error.status_code // 100}xx"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(error, APIError):
        return error.kind
    return "connection"


def retryable(error: BaseException) -> bool:
    if isinstance(error, SupersededError | UpstreamEmptyReplyError):
        return False
    if isinstance(error, UpstreamStatusError):
        return error.status_code >= 500 or error.status_code in (408, 409, 429)
    return isinstance(error, aiohttp.ClientError | UpstreamError)
