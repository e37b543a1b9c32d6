"""How a fallback reply is marked: visible to developers, invisible to Tavus (issue 21).

When the upstream fails before the first token, a stream speaks `PERCEPTION_LLM_FALLBACK_TEXT`
instead of going silent — right for a replica, misleading for someone testing: the reply looks
like a fast, successful answer. So the stream says why, in two places every OpenAI client
ignores: an SSE comment line before the first chunk (`: fallback: upstream unreachable`; the SSE
spec has clients drop comment lines) and, when the fallback is known before the response starts
(always, unless a keep-alive had to go out first), a response header
`X-Perception-LLM-Fallback: upstream unreachable`. `simulate`, `compare` and the playground read
them; nothing compares reply text.

The reason is a short phrase from the error's class and status, never the upstream's message
(that goes to the log).
"""

from __future__ import annotations

from server.errors import (
    APIError,
    AuthenticationError,
    PermissionDeniedError,
    UpstreamTimeoutError,
    UpstreamUnreachableError,
)

FALLBACK_HEADER = "x-perception-llm-fallback"
FALLBACK_COMMENT_PREFIX = ": fallback: "


def fallback_reason(error: APIError) -> str:
    """A short, fixed phrase saying why the fallback was spoken."""
    if isinstance(error, UpstreamUnreachableError):
        return "upstream unreachable"
    if isinstance(error, UpstreamTimeoutError):
        return "upstream timeout"
    if isinstance(error, AuthenticationError | PermissionDeniedError):
        return f"upstream refused the key (HTTP {error.status_code})"
    if 400 <= error.status_code < 500:
        return f"upstream rejected the request (HTTP {error.status_code})"
    return "upstream error"


def fallback_headers(reason: str | None) -> list[tuple[bytes, bytes]]:
    """The response header marking a fallback reply (none when the reply is the model's)."""
    return [] if reason is None else [(FALLBACK_HEADER.encode(), reason.encode("ascii"))]


def fallback_frame(reason: str) -> bytes:
    """The SSE comment line (and its blank line) that marks a fallback reply."""
    return f"{FALLBACK_COMMENT_PREFIX}{reason}\n\n".encode()
