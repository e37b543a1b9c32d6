"""The response model relay, end to end: openai SDK → our server (uvicorn, loopback) → a real
loopback fake upstream. Asserts what the upstream received, exactly what was relayed, and the
behaviour for every failure, disconnect and supersession."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import load_sample, make_settings
from tests.fake_upstream import FakeUpstream, Reply, chunk, text_reply
from tests.live import running_server

RAVEN = load_sample("raven0-documented")
FALLBACK = "Sorry, one moment please."


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream().serving() as upstream:
        yield upstream


@pytest.fixture
def serve(fake: FakeUpstream) -> Iterator[Any]:
    """Start our server in front of `fake` with extra settings; yields a starter function."""
    from contextlib import ExitStack

    with ExitStack() as stack:

        def start(**overrides: Any) -> str:
            settings = make_settings(
                **{"upstream_base_url": fake.base_url, "fallback_text": FALLBACK, **overrides}
            )
            return stack.enter_context(running_server(settings))

        yield start


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="client-key", max_retries=0, timeout=20)


def raw_stream(url: str) -> bytes:
    """The exact bytes of a streamed completion of the raven sample."""
    body = {"model": "m", "messages": RAVEN["messages"], "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=20) as response:
        return b"".join(response.iter_raw())


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_forwarding_what_the_upstream_receives(fake: FakeUpstream, serve: Any) -> None:
    url = serve(
        upstream_api_key="up-key",
        upstream_model="gpt-up",
        upstream_headers={"x-team": "video"},
        upstream_query={"api-version": "2024-10-21"},
    )
    tools = load_sample("disabled-with-tools")["tools"]
    history = [
        *RAVEN["messages"][:-1],
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {
                        "name": "get_current_weather",
                        "arguments": '{"location":"Paris"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "18C"},
        RAVEN["messages"][-1],
    ]
    fake.script = [text_reply("Once", " upon")]
    stream = sdk(url).chat.completions.create(
        model="persona-model",
        messages=history,
        stream=True,
        temperature=0.3,
        top_p=0.8,
        tools=tools,
        tool_choice="auto",
        extra_body={"prompt": "default", "frequency_penalty": 0.5, "custom_flag": {"deep": [1, 2]}},
        extra_headers={"conversation-id": "c-1"},
    )
    assert content_of(list(stream)) == "Once upon"
    received = fake.wait_for_requests(1)
    assert received.path == "/v1/chat/completions"
    assert received.query == {"api-version": "2024-10-21"}
    assert received.headers["authorization"] == "Bearer up-key"
    assert received.headers["x-team"] == "video"
    body = received.body
    assert body["model"] == "gpt-up" and body["stream"] is True
    assert (body["temperature"], body["top_p"], body["frequency_penalty"]) == (0.3, 0.8, 0.5)
    assert body["custom_flag"] == {"deep": [1, 2]}
    assert body["tools"] == tools and body["tool_choice"] == "auto"
    assert "prompt" not in body and "stream_options" not in body
    sent = json.dumps(body["messages"], ensure_ascii=False)
    assert "<user_" not in sent and "\u27e6perception" in sent  # the default template, fenced
    assert body["messages"][0] == RAVEN["messages"][0]
    assert any(m.get("tool_calls") for m in body["messages"])
    assert {"role": "tool", "tool_call_id": "call_9", "content": "18C"} in body["messages"]


def test_model_comes_from_the_request_without_override(fake: FakeUpstream, serve: Any) -> None:
    url = serve()
    stream = sdk(url).chat.completions.create(
        model="llama3.1:8b", messages=RAVEN["messages"], stream=True
    )
    chunks = list(stream)
    assert fake.wait_for_requests(1).body["model"] == "llama3.1:8b"
    assert {c.model for c in chunks} == {"llama3.1:8b"}


def test_relay_is_exact_and_shaped_like_openai(fake: FakeUpstream, serve: Any) -> None:
    url = serve()
    words = ["Hel", "lo", " there", ", friend", "!"]
    fake.script = [
        text_reply(*words, usage={"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16})
    ]
    chunks = list(
        sdk(url).chat.completions.create(model="m", messages=RAVEN["messages"], stream=True)
    )
    assert [c.choices[0].delta.content for c in chunks[:-1]] == words
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks] == [None] * 5 + ["stop"]
    assert len({c.id for c in chunks}) == 1 and all(c.usage is None for c in chunks)


def test_usage_only_when_asked(fake: FakeUpstream, serve: Any) -> None:
    url = serve()
    usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    fake.script = [text_reply("a", "b", usage=usage)]
    chunks = list(
        sdk(url).chat.completions.create(
            model="m",
            messages=RAVEN["messages"],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert fake.wait_for_requests(1).body["stream_options"] == {"include_usage": True}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 13


def test_tool_call_fragments_are_relayed_exactly(fake: FakeUpstream, serve: Any) -> None:
    url = serve()
    fragments = [
        {
            "index": 0,
            "id": "call_abc",
            "type": "function",
            "function": {"name": "get_current_weather", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"loca'}},
        {"index": 0, "function": {"arguments": 'tion": "SF"}'}},
        {
            "index": 1,
            "id": "call_def",
            "type": "function",
            "function": {"name": "get_time", "arguments": "{}"},
        },
    ]
    fake.script = [
        Reply(
            steps=[
                (
                    "data",
                    chunk({"role": "assistant", "content": None, "tool_calls": [fragments[0]]}),
                ),
                *[("data", chunk({"tool_calls": [f]})) for f in fragments[1:]],
                ("data", chunk({}, "tool_calls")),
            ]
        )
    ]
    with httpx.stream(
        "POST",
        url + "/v1/chat/completions",
        json={"model": "m", "messages": RAVEN["messages"], "stream": True},
    ) as response:
        raw = b"".join(response.iter_raw())
    payloads = [json.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: {")]
    relayed = [p["choices"][0]["delta"].get("tool_calls") for p in payloads]
    assert [r[0] for r in relayed[:4]] == fragments
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [p["choices"][0]["finish_reason"] for p in payloads] == [None] * 4 + ["tool_calls"]
    completion = sdk(url).chat.completions.create(model="m", messages=RAVEN["messages"])
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_abc", "get_current_weather", '{"location": "SF"}'),
        ("call_def", "get_time", "{}"),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_echo_stays_reachable_and_models_lists_both(fake: FakeUpstream, serve: Any) -> None:
    url = serve(upstream_model="gpt-up")
    reply = sdk(url).chat.completions.create(model="echo", messages=RAVEN["messages"])
    assert (reply.choices[0].message.content or "").startswith('You said: "Sure')
    assert fake.received == []
    assert [m.id for m in sdk(url).models.list()] == ["gpt-up", "echo"]


def test_models_lists_what_the_upstream_listed_then_echo(fake: FakeUpstream, serve: Any) -> None:
    """Without a model override, a request may name any model the upstream serves: the start-up
    check reads the upstream's own list, and `/v1/models` shows it (echo last, once)."""
    listing = {"object": "list", "data": [{"id": "gpt-a"}, {"id": "echo"}, {"id": "gpt-b"}, 7]}
    fake.script = [Reply(json_body=listing), text_reply("ok")]
    url = serve(upstream_check=True)
    assert fake.wait_for_requests(1).path == "/v1/models"
    deadline = time.monotonic() + 5
    while (names := [m.id for m in sdk(url).models.list()]) == ["echo"]:
        assert time.monotonic() < deadline, "the listing never reached /v1/models"
    assert names == ["gpt-a", "echo", "gpt-b"]


def test_connections_to_the_upstream_are_pooled(fake: FakeUpstream, serve: Any) -> None:
    url = serve()
    client = sdk(url)
    for _ in range(4):
        assert (
            content_of(
                list(
                    client.chat.completions.create(
                        model="m", messages=RAVEN["messages"], stream=True
                    )
                )
            )
            == "ok"
        )
    assert len(fake.received) == 4 and fake.connections == 1


# --- failures before the first token -------------------------------------------------------


def test_5xx_is_retried_once(fake: FakeUpstream, serve: Any) -> None:
    url = serve()
    fake.script = [Reply(status=503), text_reply("recovered")]
    chunks = list(
        sdk(url).chat.completions.create(model="m", messages=RAVEN["messages"], stream=True)
    )
    assert content_of(chunks) == "recovered" and len(fake.received) == 2


def test_persistent_5xx_speaks_the_fallback_in_a_stream(fake: FakeUpstream, serve: Any) -> None:
    url = serve()
    fake.script = [Reply(status=500)]
    chunks = list(
        sdk(url).chat.completions.create(model="m", messages=RAVEN["messages"], stream=True)
    )
    assert content_of(chunks) == FALLBACK
    assert [c.choices[0].finish_reason for c in chunks].count("stop") == 1
    assert len(fake.received) == 2  # one retry, no more


@pytest.mark.parametrize(
    ("reply", "status", "needle"),
    [
        (Reply(status=500), 502, "status 500"),
        (
            Reply(
                status=400,
                error={
                    "message": "max_tokens is too large",
                    "type": "invalid_request_error",
                    "param": "max_tokens",
                },
            ),
            400,
            "max_tokens is too large",
        ),
        (
            Reply(
                status=404, error={"message": "model not found", "type": "invalid_request_error"}
            ),
            404,
            "model not found",
        ),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_errors_without_fallback_keep_the_right_status(
    fake: FakeUpstream, serve: Any, reply: Reply, status: int, needle: str, stream: bool
) -> None:
    url = serve(fallback_text="")
    fake.script = [reply]
    response = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "m", "messages": RAVEN["messages"], "stream": stream},
        timeout=20,
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert needle in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert len(fake.received) == (2 if status >= 500 else 1)  # 4xx is not retried


def test_no_first_token_in_time_is_a_504_or_the_fallback(fake: FakeUpstream, serve: Any) -> None:
    fake.script = [Reply(steps=[("hang", None)])]
    url = serve(first_token_timeout_seconds=0.4, fallback_text="")
    started = time.monotonic()
    response = httpx.post(
        url + "/v1/chat/completions", json={"model": "m", "messages": RAVEN["messages"]}, timeout=20
    )
    assert response.status_code == 504 and response.json()["error"]["type"] == "timeout_error"
    assert time.monotonic() - started < 3
    streamed = serve(first_token_timeout_seconds=0.4)
    chunks = list(
        sdk(streamed).chat.completions.create(model="m", messages=RAVEN["messages"], stream=True)
    )
    assert content_of(chunks) == FALLBACK


def test_unreachable_upstream_gives_the_fallback_or_502(serve: Any) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connection refused
    url = serve(upstream_base_url=f"http://127.0.0.1:{port}/v1", fallback_text="")
    response = httpx.post(
        url + "/v1/chat/completions", json={"model": "m", "messages": RAVEN["messages"]}, timeout=20
    )
    assert response.status_code == 502 and "cannot reach" in response.json()["error"]["message"]


def test_keepalive_comments_flow_while_the_first_token_is_slow(
    fake: FakeUpstream, serve: Any
) -> None:
    url = serve(keepalive_seconds=0.1)
    fake.script = [text_reply("late", delay=0.6)]
    raw = raw_stream(url)
    before_first_data = raw.split(b"data: ")[0]
    assert before_first_data.count(b": keep-alive\n\n") >= 2
    assert raw.endswith(b"data: [DONE]\n\n")


# --- failures after the first token --------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "needle"),
    [
        ([("drop", None)], "lost"),
        ([("raw", b"data: {not json\n\n")], "malformed"),
        ([("wait", 0.8)], "quiet"),
        ([("data", {"error": {"message": "overloaded"}})], "overloaded"),
    ],
)
def test_mid_stream_failures_end_with_an_error_event_and_done(
    fake: FakeUpstream, serve: Any, tail: list[Any], needle: str
) -> None:
    url = serve(idle_timeout_seconds=0.3)
    fake.script = [
        Reply(
            steps=[
                ("data", chunk({"content": "Partial"})),
                *tail,
                ("data", chunk({"content": "never"})),
            ]
        )
    ]
    raw = raw_stream(url)
    events = [e for e in raw.split(b"\n\n") if e.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]"
    error = json.loads(events[-2][6:])["error"]
    assert needle in error["message"]
    assert b"Partial" in raw and b"never" not in raw
    assert len(fake.received) == 1  # no retry after the first token


# --- cancellation ----------------------------------------------------------------------------


def open_stream_and_abandon(url: str, body: dict[str, Any], read_first_data: bool) -> float:
    """Send a streaming request, optionally read until the first data event, then vanish."""
    client = httpx.Client(timeout=20)
    response = client.send(
        client.build_request("POST", url + "/v1/chat/completions", json=body), stream=True
    )
    if read_first_data:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break
    closed_at = time.monotonic()
    response.close()
    client.close()
    return closed_at


@pytest.mark.parametrize(
    "read_first_data", [False, True], ids=["before-first-token", "after-first-token"]
)
def test_client_disconnect_closes_the_upstream_within_100ms(
    fake: FakeUpstream, serve: Any, read_first_data: bool
) -> None:
    url = serve()
    steps = (
        [("data", chunk({"content": "first"})), ("hang", None)]
        if read_first_data
        else [("hang", None)]
    )
    fake.script = [Reply(steps=steps)]
    body = {"model": "m", "messages": RAVEN["messages"], "stream": True}
    if read_first_data:
        closed_at = open_stream_and_abandon(url, body, True)
    else:
        client = httpx.Client(timeout=20)
        response = client.send(
            client.build_request("POST", url + "/v1/chat/completions", json=body), stream=True
        )
        fake.wait_for_requests(1)
        closed_at = time.monotonic()
        response.close()
        client.close()
    upstream_request = fake.wait_for_requests(1)
    assert upstream_request.gone.wait(2), "upstream request was never closed"
    assert upstream_request.gone_at is not None and upstream_request.gone_at - closed_at < 0.1


@pytest.mark.parametrize(
    "stream", [False, True], ids=["non-streaming", "streaming-without-fallback"]
)
def test_disconnect_before_the_response_started_is_noticed(
    fake: FakeUpstream, serve: Any, stream: bool
) -> None:
    url = serve(fallback_text="")
    fake.script = [Reply(steps=[("hang", None)])]
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"model": "m", "messages": RAVEN["messages"], "stream": stream}).encode()
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    upstream_request = fake.wait_for_requests(1)  # our server is now waiting on the upstream
    closed_at = time.monotonic()
    raw.close()
    assert upstream_request.gone.wait(2)
    assert upstream_request.gone_at is not None and upstream_request.gone_at - closed_at < 0.1


def test_newest_request_of_a_conversation_wins(fake: FakeUpstream, serve: Any) -> None:
    url = serve()
    fake.script = [
        Reply(steps=[("data", chunk({"content": "old"})), ("hang", None)]),
        text_reply("new"),
    ]
    client = httpx.Client(timeout=20)
    body = {"model": "m", "messages": RAVEN["messages"], "stream": True}
    older = client.send(
        client.build_request(
            "POST", url + "/v1/chat/completions", json=body, headers={"conversation-id": "conv-7"}
        ),
        stream=True,
    )
    lines = older.iter_lines()
    assert next(line for line in lines if line.startswith("data: {"))  # older is streaming
    newer = sdk(url).chat.completions.create(
        model="m",
        messages=RAVEN["messages"],
        stream=True,
        extra_headers={"x-conversation-id": "conv-7"},
    )
    assert content_of(list(newer)) == "new"
    rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    assert json.loads(rest[-2][6:])["error"]["code"] == "superseded"
    assert fake.received[0].gone.wait(2)
    older.close()
    client.close()


def test_other_conversations_are_not_superseded(fake: FakeUpstream, serve: Any) -> None:
    url = serve()
    fake.script = [text_reply("a", "b", gap=0.05)]
    client = sdk(url)
    first = client.chat.completions.create(
        model="m", messages=RAVEN["messages"], stream=True, extra_headers={"conversation-id": "one"}
    )
    second = client.chat.completions.create(
        model="m", messages=RAVEN["messages"], stream=True, extra_headers={"conversation-id": "two"}
    )
    assert content_of(list(second)) == "ab" and content_of(list(first)) == "ab"


def test_one_log_line_per_request_with_outcome_and_no_secrets(
    fake: FakeUpstream, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = serve(upstream_api_key="up-secret-key", api_key="client-secret-key")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="client-secret-key", max_retries=0)
    fake.script = [text_reply("hi", " there"), Reply(status=500), Reply(status=500)]
    with caplog.at_level(logging.INFO):
        list(
            client.chat.completions.create(
                model="m",
                messages=RAVEN["messages"],
                stream=True,
                extra_headers={"x-request-id": "req-1", "conversation-id": "conv-1"},
            )
        )
        list(
            client.chat.completions.create(
                model="m",
                messages=RAVEN["messages"],
                stream=True,
                extra_headers={"x-request-id": "req-2"},
            )
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "perception_llm.requests"]
    assert len(lines) == 2
    assert (
        "request_id=req-1 conversation_id=conv-1 model=m template=default stream=True outcome=completed"
        in lines[0]
    )
    assert "chunks=2" in lines[0] and "ttft_ms=" in lines[0]
    assert "request_id=req-2" in lines[1] and "outcome=fallback" in lines[1]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "up-secret-key" not in everything and "client-secret-key" not in everything
