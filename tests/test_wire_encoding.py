"""Pure encoders: exact bytes and strings (sse.py, chunks.py)."""

from __future__ import annotations

import json

import pytest

from server.wire.chunks import ChunkEncoder, new_completion_id
from server.wire.sse import DONE_FRAME, compact_json, data_event


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}'),
        ({"t": "héllo"}, '{"t":"héllo"}'),
        ({"t": "line\nbreak"}, '{"t":"line\\nbreak"}'),
        ({"t": "a\u2028b\u2029c\u0085d"}, '{"t":"a\\u2028b\\u2029c\\u0085d"}'),
        ({"t": None}, '{"t":null}'),
    ],
)
def test_compact_json(value: object, expected: str) -> None:
    assert compact_json(value) == expected
    assert json.loads(compact_json(value)) == value


def test_compact_json_output_never_splits_into_lines() -> None:
    text = compact_json({"t": "a\nb\rc\u2028d\u2029e\u0085f\x0bg\x0ch\x1ci"})
    assert text.splitlines() == [text]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"a":1}', b'data: {"a":1}\n\n'),
        ('{"t":"é"}', b'data: {"t":"\xc3\xa9"}\n\n'),
    ],
)
def test_data_event_bytes(payload: str, expected: bytes) -> None:
    assert data_event(payload) == expected


def test_terminal_frame() -> None:
    assert DONE_FRAME == b"data: [DONE]\n\n"


def test_chunk_envelope_is_exact() -> None:
    encoder = ChunkEncoder(model="echo", completion_id="chatcmpl-abc", created=1700000000)
    assert encoder.choice({"role": "assistant", "content": "Hi"}) == (
        '{"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,'
        '"model":"echo","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},'
        '"logprobs":null,"finish_reason":null}]}'
    )
    assert encoder.choice({}, "stop").endswith(
        '"delta":{},"logprobs":null,"finish_reason":"stop"}]}'
    )
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert json.loads(encoder.usage(usage)) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "echo",
        "choices": [],
        "usage": usage,
    }


def test_model_name_is_escaped_in_the_envelope() -> None:
    encoder = ChunkEncoder(model='we"ird\nmodel', completion_id="chatcmpl-x", created=1)
    assert json.loads(encoder.choice({"content": "x"}))["model"] == 'we"ird\nmodel'


def test_completion_object_shape() -> None:
    encoder = ChunkEncoder(model="m", completion_id="chatcmpl-y", created=5)
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    body = encoder.completion({"role": "assistant", "content": "ok"}, "stop", usage)
    assert body == {
        "id": "chatcmpl-y",
        "object": "chat.completion",
        "created": 5,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def test_completion_ids_are_unique_and_prefixed() -> None:
    ids = {new_completion_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("chatcmpl-") for i in ids)
