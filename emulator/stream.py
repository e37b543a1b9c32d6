"""One streamed request the way Tavus sends it, with every wire-contract check Tavus relies on.

The request goes through the official `openai` SDK (`AsyncOpenAI`, as Tavus uses) with
`with_streaming_response`, so the raw SSE lines are read and checked instead of being smoothed
over by the SDK's parser: content type, one `data:` line per event, no `id:`/`event:`/`retry:`
fields, JSON chunks, `role` in the first delta, exactly one `finish_reason`, one `id`, tool-call
delta shape, and `[DONE]` last. perception-llm's fallback marker (a comment line or header, see
`server/completion/fallback_marker.py`) is read, so a spoken fallback is never mistaken for a reply.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai

from server.completion.fallback_marker import FALLBACK_COMMENT_PREFIX, FALLBACK_HEADER


class EndpointError(Exception):
    """The endpoint cannot be used at all (unreachable, wrong key): one line, exit status 2."""


class KeyRefusedError(EndpointError):
    """The endpoint refused the API key (401/403): retrying cannot help."""


@dataclass
class StreamResult:
    status: int = 0
    content_type: str = ""
    text: str = ""
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reasons: list[str] = field(default_factory=list)
    ttft: float | None = None  # seconds to the first content or tool-call delta
    total: float = 0.0
    problems: list[str] = field(default_factory=list)  # contract violations, by check name
    error: str | None = None  # an HTTP error or an error event
    abandoned: bool = False
    chunks: int = 0
    model: str | None = None  # the model the chunks say answered (e.g. `echo`, the upstream's)
    fallback: str | None = None  # why perception-llm spoke its fallback line instead of a reply

    def problem(self, check: str, detail: str) -> None:
        self.problems.append(f"{check}: {detail}")

    def assistant_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        elif not self.text:
            message["content"] = ""
        return message


class ChunkChecker:
    """Checks the lines of one stream as they arrive; fills a `StreamResult`."""

    def __init__(self, result: StreamResult, started: float, on_text: Callable[[str], None]):
        self.result = result
        self.started = started
        self.on_text = on_text
        self.identity: tuple[Any, Any, Any] | None = None
        self.first_delta = True
        self.pending_blank = False  # a data line must be followed by a blank line
        self.done = False

    def line(self, line: str) -> None:
        result = self.result
        if line == "":
            self.pending_blank = False
            return
        if line.startswith(FALLBACK_COMMENT_PREFIX):
            result.fallback = line.removeprefix(FALLBACK_COMMENT_PREFIX).strip()
            return
        if line.startswith(":"):
            return  # a comment: keep-alive
        field_name = line.split(":", 1)[0]
        if field_name != "data":
            result.problem("sse_framing", f"unexpected '{field_name}:' line")
            return
        if self.pending_blank:
            result.problem("sse_framing", "two data lines without a blank line between them")
        self.pending_blank = True
        payload = line[5:].strip()
        if self.done:
            result.problem("done_terminator", "data after [DONE]")
            return
        if payload == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(payload)
        except ValueError:
            result.problem("chunk_json", f"not JSON: {payload[:60]!r}")
            return
        self.chunk(chunk)

    def chunk(self, chunk: Any) -> None:
        result = self.result
        if not isinstance(chunk, dict):
            result.problem("chunk_json", "a chunk is not a JSON object")
            return
        if "error" in chunk:
            error = chunk["error"]
            result.error = str(error.get("message") if isinstance(error, dict) else error)
            result.problem("stream_error", f"error event: {result.error}")
            return
        result.chunks += 1
        if chunk.get("object") != "chat.completion.chunk":
            result.problem("chunk_json", f"object is {chunk.get('object')!r}")
        identity = (chunk.get("id"), chunk.get("created"), chunk.get("model"))
        if self.identity is None:
            self.identity = identity
            model = chunk.get("model")
            result.model = model if isinstance(model, str) else None
        elif identity != self.identity:
            result.problem("constant_id", f"id/created/model changed to {identity}")
        for choice in chunk.get("choices") or ():
            self.choice(choice)

    def choice(self, choice: Any) -> None:
        result = self.result
        if not isinstance(choice, dict) or choice.get("index") != 0:
            result.problem("chunk_json", "a choice without index 0")
            return
        delta = choice.get("delta") or {}
        if self.first_delta:
            self.first_delta = False
            if delta.get("role") != "assistant":
                result.problem("role_first", "the first delta has no role 'assistant'")
        if choice.get("finish_reason"):
            result.finish_reasons.append(choice["finish_reason"])
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.token()
            result.text += content
            self.on_text(content)
        for fragment in delta.get("tool_calls") or ():
            self.token()
            self.tool_fragment(fragment)

    def token(self) -> None:
        if self.result.ttft is None:
            self.result.ttft = time.perf_counter() - self.started

    def tool_fragment(self, fragment: Any) -> None:
        result = self.result
        index = fragment.get("index") if isinstance(fragment, dict) else None
        if not isinstance(index, int):
            result.problem("tool_call_deltas", "a tool-call fragment without an integer index")
            return
        function = fragment.get("function") or {}
        if index not in result.tool_calls:
            if not (
                isinstance(fragment.get("id"), str)
                and fragment.get("type") == "function"
                and isinstance(function.get("name"), str)
            ):
                result.problem(
                    "tool_call_deltas", f"first fragment of call {index} lacks id, type or name"
                )
            result.tool_calls[index] = {
                "id": fragment.get("id") or "",
                "type": "function",
                "function": {"name": function.get("name") or "", "arguments": ""},
            }
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            result.problem("tool_call_deltas", "arguments fragment is not a string")
        elif arguments:
            result.tool_calls[index]["function"]["arguments"] += arguments

    def finish(self) -> None:
        result = self.result
        if not self.done:
            result.problem("done_terminator", "the stream ended without data: [DONE]")
        if len(result.finish_reasons) != 1 and not result.error:
            result.problem("single_finish_reason", f"{len(result.finish_reasons)} finish reasons")


async def run_stream(
    client: openai.AsyncOpenAI,
    body: dict[str, Any],
    *,
    on_text: Callable[[str], None] = lambda _: None,
    abandon_after_first_chunk: bool = False,
) -> StreamResult:
    """Send one streaming request; check and collect what comes back."""
    result = StreamResult()
    started = time.perf_counter()
    known = {"model", "messages", "tools"}
    arguments: dict[str, Any] = {k: body[k] for k in known if k in body}
    extra = {k: v for k, v in body.items() if k not in known}
    try:
        async with client.chat.completions.with_streaming_response.create(
            stream=True, extra_body=extra or None, **arguments
        ) as response:
            result.status = response.status_code
            result.content_type = response.headers.get("content-type", "")
            result.fallback = response.headers.get(FALLBACK_HEADER)
            if not result.content_type.startswith("text/event-stream"):
                result.problem("content_type", f"{result.content_type!r}, not text/event-stream")
            checker = ChunkChecker(result, started, on_text)
            async for line in response.iter_lines():
                checker.line(line)
                if abandon_after_first_chunk and result.chunks:
                    result.abandoned = True
                    break
            if not result.abandoned:
                checker.finish()
    except openai.AuthenticationError as error:
        raise KeyRefusedError(
            f"the endpoint refused the API key (HTTP {error.status_code})"
        ) from None
    except openai.APIStatusError as error:
        result.status = error.status_code
        result.error = f"HTTP {error.status_code}: {error.message}"
        result.problem("http_status", result.error)
    except openai.APIConnectionError as error:
        raise EndpointError(f"cannot reach {client.base_url}: {error.__cause__ or error}") from None
    result.total = time.perf_counter() - started
    return result


async def listed_model(client: openai.AsyncOpenAI) -> str | None:
    """The model to ask for when none was chosen: the first the endpoint lists, preferring any
    over the offline `echo` (perception-llm lists its response model first)."""
    try:
        page = await client.models.list()
        names = [model.id for model in page.data if isinstance(model.id, str)]
    except openai.AuthenticationError as error:  # not "no models": nothing else will work either
        raise EndpointError(
            f"the endpoint refused the API key (HTTP {error.status_code})"
        ) from None
    except openai.APIConnectionError as error:
        raise EndpointError(f"cannot reach {client.base_url}: {error.__cause__ or error}") from None
    except (openai.APIError, ValueError, TypeError, AttributeError):
        return None  # an endpoint without a usable /models
    return next((name for name in names if name != "echo"), names[0] if names else None)
