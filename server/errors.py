"""One exception hierarchy for every failure a client can see, mapped to OpenAI error JSON.

Routes, responders and the request lifecycle raise these; `install_error_handlers` turns them
(and FastAPI/Starlette's own errors) into `{"error": {"message", "type", "param", "code"}}` in
one place. Each class sets its HTTP status, its OpenAI `type` and a short `kind` that metrics
and logs use, so nothing is ever classified by the text of its message or re-labelled after it
is raised. The shape and the `type` values follow openai-python's `_exceptions.py` and the bodies
the OpenAI API returns, so SDK clients raise the matching exception class.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

logger = logging.getLogger(__name__)


class APIError(Exception):
    """Base of every error that reaches a client; subclasses set status, type and kind."""

    status_code = 500
    error_type = "server_error"
    kind = "internal"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        if error_type is not None:  # an upstream's own `type` (e.g. invalid_api_key), relayed
            self.error_type = error_type

    def body(self) -> dict[str, Any]:
        """The OpenAI error object (also used inside an SSE `{"error": ...}` event)."""
        return error_body(self.message, self.error_type, self.param, self.code)


class InvalidRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"
    kind = "invalid_request"


class AuthenticationError(APIError):
    status_code = 401
    error_type = "invalid_request_error"  # what api.openai.com sends with code invalid_api_key
    kind = "authentication"


class PermissionDeniedError(APIError):
    status_code = 403
    error_type = "invalid_request_error"
    kind = "permission"


class NotFoundError(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    kind = "not_found"


class MethodNotAllowedError(APIError):
    status_code = 405
    error_type = "invalid_request_error"
    kind = "method_not_allowed"


class ConflictError(APIError):
    status_code = 409
    error_type = "invalid_request_error"
    kind = "conflict"


class PayloadTooLargeError(APIError):
    status_code = 413
    error_type = "invalid_request_error"
    kind = "too_large"


class UnsupportedMediaTypeError(APIError):
    status_code = 415
    error_type = "invalid_request_error"
    kind = "media_type"


class UnprocessableEntityError(APIError):
    status_code = 422
    error_type = "invalid_request_error"
    kind = "unprocessable"


class RateLimitError(APIError):
    status_code = 429
    error_type = "rate_limit_error"
    kind = "rate_limited"


class ClientDisconnectedError(APIError):
    status_code = 499  # nginx's "client closed request"; nobody is left to read it
    error_type = "request_cancelled"
    kind = "client_disconnect"


class SupersededError(APIError):
    """A newer request for the same conversation took over (speculative inference)."""

    status_code = 409
    error_type = "request_cancelled"
    kind = "superseded"

    def __init__(self) -> None:
        super().__init__(
            "Superseded by a newer request for the same conversation.", code="superseded"
        )


class ShutdownError(APIError):
    status_code = 503
    error_type = "server_shutting_down"
    kind = "shutdown"

    def __init__(self) -> None:
        super().__init__("The server is shutting down; retry on another replica.", code="shutdown")


class ServiceUnavailableError(APIError):
    """A part of the server that this request needs is down (e.g. the capture database)."""

    status_code = 503
    error_type = "service_unavailable"
    kind = "unavailable"


class UpstreamError(APIError):
    """The response model failed (5xx, garbage, connection lost)."""

    status_code = 502
    error_type = "upstream_error"
    kind = "upstream"


class UpstreamUnreachableError(UpstreamError):
    """No connection to the upstream could be made (refused, no route, DNS)."""

    kind = "connect"


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    error_type = "timeout_error"
    kind = "timeout"


class MalformedChunkError(UpstreamError):
    """The upstream sent a data line that is not a JSON object."""

    kind = "malformed"


class UpstreamErrorEvent(UpstreamError):
    """The upstream streamed an `{"error": …}` event instead of a chunk."""

    kind = "error_event"


class ReplyTooLargeError(UpstreamError):
    """A reply that must be held whole (not streamed) grew past `max_reply_chars`."""

    kind = "too_large"


class UpstreamEmptyReplyError(UpstreamError):
    """The upstream finished without a word or a tool call."""

    kind = "empty_reply"


# What an upstream's 4xx becomes for our client: the same status, by class.
STATUS_ERRORS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_for_status(status: int) -> type[APIError]:
    """The class for an HTTP status; an unlisted 4xx is a 400, anything else a 500."""
    return STATUS_ERRORS.get(status) or (InvalidRequestError if 400 <= status < 500 else APIError)


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(error: APIError) -> Response:
    return Response(
        content=json.dumps(error.body(), separators=(",", ":")),
        status_code=error.status_code,
        media_type="application/json",
        headers=error.headers,
    )


def _child(node: Any, part: int | str) -> tuple[bool, Any]:
    if isinstance(node, dict) and isinstance(part, str) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


def validation_param(
    loc: tuple[int | str, ...], data: Any = None, missing: bool = False
) -> str | None:
    """OpenAI-style dotted param for a pydantic error location, e.g. `messages.[0].role`.

    pydantic adds union-member tags (`str`, `list[ContentPart]`) to locations; walking the
    location through the input keeps only the parts that are real keys and indexes.
    """
    path = [p for p in loc if p != "body"]
    if data is not None:
        kept: list[int | str] = []
        node = data
        for part in path:
            found, child = _child(node, part)
            if found:
                node = child
            elif missing and isinstance(part, str):
                kept.append(part)  # the field that should have been there
                break
            else:
                break
            kept.append(part)
        path = kept
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path) or None


def describe_validation_errors(errors: list[Any], data: Any = None) -> tuple[str, str | None]:
    """One readable message (and the first param) from pydantic's error list."""
    if not errors:
        return "Invalid request.", None
    seen: dict[str | None, str] = {}
    for err in errors:
        where = validation_param(tuple(err.get("loc", ())), data, err.get("type") == "missing")
        seen.setdefault(where, str(err.get("msg")))
    parts = [f"{where}: {msg}" if where else msg for where, msg in seen.items()]
    more = f" (and {len(parts) - 5} more)" if len(parts) > 5 else ""
    return "Invalid request: " + "; ".join(parts[:5]) + more, next(iter(seen))


def to_api_error(request: Request, exc: Exception) -> APIError:
    """The client-facing error for any exception, ours or the framework's."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, RequestValidationError):
        message, param = describe_validation_errors(list(exc.errors()), getattr(exc, "body", None))
        return InvalidRequestError(message, param=param)
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path})"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return error_for_status(exc.status_code)(message, headers=dict(exc.headers or {}))
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return APIError("The server had an error processing your request.")


async def _handle(request: Request, exc: Exception) -> Response:
    return error_response(to_api_error(request, exc))


def install_error_handlers(app: FastAPI) -> None:
    """Route every error, ours or the framework's, through `error_response`."""
    for exception_class in (APIError, StarletteHTTPException, RequestValidationError, Exception):
        app.add_exception_handler(exception_class, _handle)
