"""The event → OpenAI wire adapter (streaming.py), driven with scripted responder events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from server.completion.record import CompletionRecord
from server.completion.streaming import collect_completion, head_of, stream_chunks
from server.errors import UpstreamError
from server.responders.base import ResponseEvent
from server.wire.chunks import ChunkEncoder

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def record() -> CompletionRecord:
    return CompletionRecord(
        request_id="r", conversation_id=None, model="m", template="default", stream=True
    )


class Script:
    """An async iterator of events that records whether it was closed."""

    def __init__(self, events: list[ResponseEvent | Exception]) -> None:
        self.events = events
        self.closed = False

    def __aiter__(self) -> Script:
        return self

    async def __anext__(self) -> ResponseEvent:
        if not self.events:
            raise StopAsyncIteration
        event = self.events.pop(0)
        if isinstance(event, Exception):
            raise event
        return event

    async def aclose(self) -> None:
        self.closed = True


def run_stream(
    events: list[ResponseEvent | Exception], include_usage: bool = False
) -> tuple[list[Any], Script]:
    script = Script(events)
    encoder = ChunkEncoder(model="m", completion_id="chatcmpl-t", created=1)

    async def collect() -> list[bytes]:
        stream = stream_chunks(head_of(script), encoder, include_usage, record())
        return [frame async for frame in stream]

    frames = asyncio.run(collect())
    assert script.closed  # the events are closed however the stream ends
    assert all(f.startswith(b"data: ") and f.endswith(b"\n\n") for f in frames)
    assert frames[-1] == b"data: [DONE]\n\n"
    return [json.loads(f[6:]) for f in frames[:-1]], script


def deltas(chunks: list[Any]) -> list[Any]:
    return [
        (c["choices"][0]["delta"], c["choices"][0]["finish_reason"])
        for c in chunks
        if c.get("choices")
    ]


def test_role_first_then_content_then_one_finish() -> None:
    chunks, script = run_stream(
        [
            ResponseEvent(delta={"content": "Hi "}),
            ResponseEvent(delta={"content": "there"}),
            ResponseEvent(finish_reason="stop", usage=USAGE),
        ]
    )
    assert deltas(chunks) == [
        ({"role": "assistant", "content": "Hi "}, None),
        ({"content": "there"}, None),
        ({}, "stop"),
    ]
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        ("chatcmpl-t", 1, "m", "chat.completion.chunk")
    }
    assert script.closed


def test_usage_chunk_only_when_asked() -> None:
    events = [
        ResponseEvent(delta={"content": "x"}),
        ResponseEvent(finish_reason="stop", usage=USAGE),
    ]
    without, _ = run_stream(list(events))
    with_usage, _ = run_stream(list(events), include_usage=True)
    assert all("usage" not in c for c in without)
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"] == USAGE
    assert len(with_usage) == len(without) + 1


def test_missing_finish_reason_is_added_once() -> None:
    chunks, _ = run_stream([ResponseEvent(delta={"content": "x"})])
    assert [d[1] for d in deltas(chunks)] == [None, "stop"]


def test_empty_reply_still_has_role_and_finish() -> None:
    chunks, _ = run_stream([])
    assert deltas(chunks) == [({"role": "assistant"}, "stop")]


def test_events_after_finish_are_dropped() -> None:
    chunks, _ = run_stream(
        [
            ResponseEvent(delta={"content": "a"}, finish_reason="length"),
            ResponseEvent(delta={"content": "late"}),
            ResponseEvent(finish_reason="stop"),
        ]
    )
    assert deltas(chunks) == [({"role": "assistant", "content": "a"}, "length")]


def test_api_error_mid_stream_becomes_error_event_then_done() -> None:
    chunks, script = run_stream(
        [ResponseEvent(delta={"content": "a"}), UpstreamError("upstream went away")]
    )
    assert chunks[-1] == {
        "error": {
            "message": "upstream went away",
            "type": "upstream_error",
            "param": None,
            "code": None,
        }
    }
    assert script.closed


def test_unexpected_exception_mid_stream_still_ends_with_done() -> None:
    chunks, _ = run_stream([ResponseEvent(delta={"content": "a"}), RuntimeError("bug")])
    assert chunks[-1]["error"]["type"] == "server_error"
    assert "bug" not in chunks[-1]["error"]["message"]  # internals are not leaked


def test_consumer_leaving_closes_the_responder() -> None:
    script = Script([ResponseEvent(delta={"content": str(i)}) for i in range(10)])
    encoder = ChunkEncoder(model="m")
    rec = record()

    async def take_two() -> None:
        stream = stream_chunks(head_of(script), encoder, False, rec)
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(take_two())
    assert script.closed
    assert len(script.events) == 8  # nothing was pulled after the consumer left
    assert rec.outcome == "cancelled" and rec.chunks == 2


def test_collect_completion_merges_tool_call_fragments() -> None:
    script = Script(
        [
            ResponseEvent(
                delta={
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                }
            ),
            ResponseEvent(delta={"tool_calls": [{"index": 0, "function": {"arguments": '{"loc'}}]}),
            ResponseEvent(
                delta={"tool_calls": [{"index": 0, "function": {"arguments": 'ation":"SF"}'}}]}
            ),
            ResponseEvent(finish_reason="tool_calls", usage=USAGE),
        ]
    )
    body = asyncio.run(
        collect_completion(
            head_of(script),
            ChunkEncoder(model="m", completion_id="chatcmpl-c", created=2),
            record(),
        )
    )
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"SF"}'},
            }
        ],
    }
    assert body["usage"] == USAGE and script.closed


@pytest.mark.parametrize("pieces", [["a", "b", "c"], ["only"], []])
def test_collect_completion_joins_content(pieces: list[str]) -> None:
    script = Script([ResponseEvent(delta={"content": p}) for p in pieces])
    body = asyncio.run(collect_completion(head_of(script), ChunkEncoder(model="m"), record()))
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "".join(pieces)}
    assert body["choices"][0]["finish_reason"] == "stop"
