"""The inbound SSE decoder: exact events for a table of byte inputs, the same events for any
chunking of the same bytes, and linear work on hostile shapes."""

from __future__ import annotations

import random

import pytest

from server.wire.sse_decoder import MAX_EVENT_BYTES, OversizedEventError, SSEDecoder, SSEEvent

CASES = [
    (b"data: hi\n\n", [SSEEvent("hi")]),
    (b"data:hi\n\n", [SSEEvent("hi")]),
    (b"data:  two spaces\n\n", [SSEEvent(" two spaces")]),
    (b"data: a\ndata: b\n\n", [SSEEvent("a\nb")]),
    (b"data: crlf\r\n\r\n", [SSEEvent("crlf")]),
    (b"data: cr\r\r", [SSEEvent("cr")]),
    (b": keep-alive\n\n", []),
    (b"\n\n\n", []),
    (b"event: ping\ndata: x\nid: 7\n\n", [SSEEvent("x", "ping", "7")]),
    (b"retry: 10\nfoo: bar\ndata: y\n\n", [SSEEvent("y")]),
    (b"data: [DONE]\n\n", [SSEEvent("[DONE]")]),
    (b'data: {"a":"\xc3\xa9"}\n\n', [SSEEvent('{"a":"é"}')]),
    (b"data: bad \xff utf8\n\n", [SSEEvent("bad \ufffd utf8")]),
    (b"data: one\n\ndata: two\n\n", [SSEEvent("one"), SSEEvent("two")]),
]


def decode(chunks: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.flush()


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_exact_events(raw: bytes, expected: list[SSEEvent]) -> None:
    assert decode([raw]) == expected


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_any_chunking_gives_the_same_events(raw: bytes, expected: list[SSEEvent]) -> None:
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(raw)), k=min(len(raw) - 1, rng.randint(1, 6))))
        chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        assert decode(chunks) == expected, chunks
    assert decode([bytes([b]) for b in raw]) == expected  # one byte at a time


def test_unterminated_last_event_is_flushed() -> None:
    assert decode([b"data: tail"]) == [SSEEvent("tail")]


def test_comments_and_blank_lines_are_counted_not_events() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": a\n\n: b\n\n") == []
    assert decoder.comments == 4


def test_an_oversized_line_is_refused_even_in_small_pieces() -> None:
    decoder = SSEDecoder(max_bytes=1000)
    with pytest.raises(OversizedEventError):
        for _ in range(200):
            decoder.feed(b"data: " + b"x" * 10)
    assert MAX_EVENT_BYTES >= 1024 * 1024


def test_a_long_line_fed_a_byte_at_a_time_is_joined_once() -> None:
    decoder = SSEDecoder()
    line = b"data: " + b"y" * 200_000
    events = [e for b in (line[i : i + 1] for i in range(len(line))) for e in decoder.feed(b)]
    assert events == [] and decoder.feed(b"\n\n") == [SSEEvent("y" * 200_000)]
