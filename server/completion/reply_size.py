"""How much of a reply an event carries, for the bounds on every buffer between the upstream and
a client (issue 23: a shared generation grew to 3.1 GiB behind a slow reader, a non-streamed
reply to 1.7 GiB). Characters of content, tool-call names and arguments: what a buffer holds."""

from __future__ import annotations

from server.responders.base import ResponseEvent

# A spoken reply is a few hundred characters; a million is far past any, and bounds the memory
# a reply held whole (non-streamed, or kept for the capture) may take.
DEFAULT_MAX_REPLY_CHARS = 1_000_000


def event_chars(event: ResponseEvent) -> int:
    delta = event.delta
    if not delta:
        return 0
    content = delta.get("content")
    size = len(content) if isinstance(content, str) else 0
    for fragment in delta.get("tool_calls") or ():
        function = fragment.get("function") if isinstance(fragment, dict) else None
        if isinstance(function, dict):
            for part in (function.get("name"), function.get("arguments")):
                size += len(part) if isinstance(part, str) else 0
    return size
