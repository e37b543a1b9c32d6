"""End-to-end over real sockets: uvicorn on loopback, driven by the official openai SDK and by
raw HTTP to check the exact SSE bytes, headers and every error body."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import FIXTURES, load_sample

RAVEN = load_sample("raven0-documented")


def sdk(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=10)


def test_sdk_streaming_matches_the_tavus_contract(live_url: str) -> None:
    client = sdk(live_url)
    stream = client.chat.completions.create(
        model=RAVEN["model"], messages=RAVEN["messages"], stream=True, temperature=0.7
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert len({(c.created, c.model) for c in chunks}) == 1
    assert [c.choices[0].finish_reason for c in chunks].count("stop") == 1
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith('You said: "Sure, tell me one about the three little pigs."')
    assert "An adult with glasses, sitting in a bright kitchen" in text
    assert "Neutral, attentive" in text and "A recipe website showing pancakes" in text
    assert len(chunks) > 10  # word by word, not one blob


def test_sdk_non_streaming(live_url: str) -> None:
    completion = sdk(live_url).chat.completions.create(model="x", messages=RAVEN["messages"])
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.role == "assistant"
    assert "Neutral, attentive" in (completion.choices[0].message.content or "")
    assert completion.usage is not None
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.usage.prompt_tokens > 0


def test_async_sdk_streams_with_usage(live_url: str) -> None:
    async def run() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key="x", max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hello there"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == 'You said: "hello there" I have no perception of you in this request.'


def test_streaming_and_non_streaming_agree(live_url: str) -> None:
    client = sdk(live_url)
    body = load_sample("raven1-audio")
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="m", messages=body["messages"], stream=True)
    )
    whole = client.chat.completions.create(model="m", messages=body["messages"])
    assert streamed == whole.choices[0].message.content
    assert "voice: The user sounded sarcastic when they said this" in streamed
    assert '"Wow, I love Mondays."' in streamed


def raw_post(
    url: str,
    body: bytes | str,
    headers: dict[str, str] | None = None,
    path: str = "/v1/chat/completions",
) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.post(
        url + path,
        content=content,
        headers=headers or {"content-type": "application/json"},
        timeout=10,
    )


def test_raw_sse_bytes_and_headers(live_url: str) -> None:
    body = {**RAVEN, "stream": True, "extra_thing": {"nested": True}, "top_p": 0.9}
    with httpx.stream(
        "POST",
        live_url + "/v1/chat/completions?api-version=2024-02-15-preview",
        json=body,
        timeout=10,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        raw = b"".join(response.iter_raw())
    assert raw.endswith(b"data: [DONE]\n\n")
    events = raw.split(b"\n\n")
    assert events[-1] == b""
    for event in events[:-1]:
        assert event.startswith((b"data: ", b":"))
        assert b"\n" not in event  # one line per event: no id:, event:, retry: fields
    payloads = [json.loads(e[6:]) for e in events[:-2] if e.startswith(b"data: ")]
    assert all(
        p["object"] == "chat.completion.chunk" and p["choices"][0]["index"] == 0 for p in payloads
    )
    assert b"\r" not in raw


def test_both_routes_and_models(live_url: str) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert raw_post(live_url, body, path="/chat/completions").status_code == 200
    for path in ("/v1/models", "/models"):
        listing = httpx.get(live_url + path).json()
        assert listing["object"] == "list"
        assert listing["data"][0]["id"] == "echo"
        assert set(listing["data"][0]) == {"id", "object", "created", "owned_by"}
    assert httpx.get(live_url + "/healthz").json() == {"status": "ok"}
    assert [m.id for m in sdk(live_url).models.list()] == ["echo"]


@pytest.mark.parametrize(
    ("content", "expected_quote"),
    [
        ("plain string", "plain string"),
        ([{"type": "text", "text": "from parts"}], "from parts"),
        ([{"type": "text", "text": "two"}, {"type": "text", "text": "parts"}], "two\nparts"),
        (None, None),
    ],
)
def test_content_shapes_are_accepted(
    live_url: str, content: Any, expected_quote: str | None
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    response = raw_post(live_url, json.dumps(body))
    assert response.status_code == 200
    text = response.json()["choices"][0]["message"]["content"]
    if expected_quote is None:
        assert text.startswith("I didn't hear anything")
    else:
        assert text.startswith(f'You said: "{expected_quote}"')


ERROR_CASES = [
    ("{not json", 400, None, "could not parse the JSON"),
    ("", 400, None, "empty"),
    ("[1, 2]", 400, None, "JSON object"),
    ('"text"', 400, None, "JSON object"),
    ("{}", 400, "messages", "messages"),
    ('{"messages": []}', 400, "messages", "messages"),
    ('{"messages": "hi"}', 400, "messages", "messages"),
    ('{"messages": [{"content": "no role"}]}', 400, "messages.[0].role", "role"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', 400, "messages.[0].role", "role"),
    ('{"messages": [{"role": "user", "content": 5}]}', 400, "messages.[0].content", "content"),
    ('{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "stream", "stream"),
    ('{"messages": [{"role": "user", "content": "x"}], "n": 2}', 400, "n", "n=1"),
    ('{"messages": [{"role": "user", "content": "x"}], "model": 7}', 400, "model", "model"),
]


@pytest.mark.parametrize(("body", "status", "param", "needle"), ERROR_CASES)
def test_invalid_requests_get_openai_errors(
    live_url: str, body: str, status: int, param: str | None, needle: str
) -> None:
    response = raw_post(live_url, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert needle.lower() in error["message"].lower()


def test_invalid_utf8_is_a_400(live_url: str) -> None:
    response = raw_post(live_url, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}')
    assert response.status_code == 400
    assert "UTF-8" in response.json()["error"]["message"]


def test_unknown_route_and_wrong_method(live_url: str) -> None:
    missing = httpx.get(live_url + "/v1/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Invalid URL (GET /v1/nope)"
    wrong = httpx.get(live_url + "/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"


def test_sdk_raises_bad_request_for_n(live_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(live_url).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], n=3
        )
    assert caught.value.param == "n"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": "test-key"},
        {"authorization": "Basic test-key"},
    ],
)
def test_key_required_when_configured(keyed_url: str, headers: dict[str, str]) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "x"}]})
    for response in (
        raw_post(keyed_url, body, {"content-type": "application/json", **headers}),
        httpx.get(keyed_url + "/v1/models", headers=headers),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_right_key_is_accepted_and_health_stays_open(keyed_url: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        sdk(keyed_url, "nope").models.list()
    completion = sdk(keyed_url, "test-key").chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content
    assert httpx.get(keyed_url + "/healthz").status_code == 200


def test_the_offline_responder_answers_from_the_prompt_each_template_produced(
    live_url: str,
) -> None:
    """Templates can be compared with no model: echo reads the fenced block it was sent."""
    fixture = json.loads((FIXTURES / "perception" / "tavus-logged-layout.json").read_text())
    replies = {}
    for template in ("default", "minimal", "passthrough"):
        reply = sdk(live_url).chat.completions.create(
            model="echo", messages=fixture["messages"], extra_body={"prompt": template}
        )
        replies[template] = reply.choices[0].message.content or ""
    assert "→" in replies["default"]  # the changes note: emotions went Neutral → Confused
    assert "→" not in replies["minimal"] and "The prompt tells me:" in replies["minimal"]
    assert "raw tags" in replies["passthrough"]
    assert len(set(replies.values())) == 3
