"""Identical requests in flight share one upstream generation (issue 16, "Duplicate calls").

Source and how thin it is: tests/fixtures/tavus/lifecycle.json ("duplicate_calls"). Everything runs over real sockets: the
server under uvicorn, the official `openai` SDK as Tavus' client, a loopback upstream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from server.inprocess import LiveServer, live_server
from server.services import services
from tests.conftest import FIXTURES, make_settings
from tests.fake_upstream import FakeUpstream, text_reply

WORDS = [f"word{i} " for i in range(8)]
FULL = "".join(WORDS)
FIXTURE = json.loads((FIXTURES / "tavus" / "lifecycle.json").read_text())["duplicate_calls"]
MESSAGES = FIXTURE["body"]["messages"]


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream().serving() as upstream:
        # The upstream's pacing is the behaviour under test: a turn that takes ~0.4 s to speak,
        # so the twin arrives while the first is in flight.
        upstream.script = [text_reply(*WORDS, gap=0.05)]
        yield upstream


def serve(fake: FakeUpstream, **overrides: Any) -> Any:
    return live_server(make_settings(upstream_base_url=fake.base_url, **overrides))


async def ask(
    url: str,
    messages: list[dict[str, Any]] = MESSAGES,
    conversation: str | None = "c-1",
    leave_when: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> dict[str, Any]:
    """One streamed request; `started` is set at its first content, and the client hangs up
    once it has content and `leave_when` is set."""
    headers = {"conversation-id": conversation} if conversation else {}
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
    text, error = "", None
    try:
        stream = await client.chat.completions.create(
            model="m",
            messages=messages,
            stream=True,
            extra_headers=headers,  # type: ignore[arg-type]
        )
        async for part in stream:
            if part.choices and part.choices[0].delta.content:
                text += part.choices[0].delta.content
                if started is not None:
                    started.set()
                if leave_when is not None:
                    await leave_when.wait()
                    await stream.close()
                    break
    except openai.APIError as caught:
        error = caught
    finally:
        await client.close()
    return {"text": text, "error": error}


async def after_upstream_saw(fake: FakeUpstream, count: int) -> None:
    await asyncio.to_thread(fake.wait_for_requests, count)


def wait_for_twin(server: LiveServer) -> None:
    """Until a request has joined another's generation (polls the server's own state)."""
    shared = services(server.app).shared
    deadline = time.monotonic() + 5
    while not any(generation.twins for generation in shared._live.values()):
        assert time.monotonic() < deadline, "no request joined as a twin"
        time.sleep(0.001)


def saved_calls(server: LiveServer) -> float:
    metrics = httpx.get(server.url + "/metrics").text
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("perception_llm_upstream_calls_saved_total ")
    )
    return float(line.split()[1])


def test_identical_requests_share_one_upstream_call(fake: FakeUpstream) -> None:
    async def run(url: str) -> list[dict[str, Any]]:
        first = asyncio.ensure_future(ask(url))
        await after_upstream_saw(fake, 1)
        return [await ask(url), await first]

    with serve(fake) as server:
        twin, first = asyncio.run(run(server.url))
        assert first == {"text": FULL, "error": None}
        assert twin == {"text": FULL, "error": None}
        assert len(fake.received) == 1
        assert saved_calls(server) == 1


def test_the_twin_gets_the_whole_reply_when_the_first_client_leaves(fake: FakeUpstream) -> None:
    async def run(server: LiveServer) -> list[dict[str, Any]]:
        twin_started = asyncio.Event()
        first = asyncio.ensure_future(ask(server.url, leave_when=twin_started))
        await after_upstream_saw(fake, 1)
        twin = asyncio.ensure_future(ask(server.url, started=twin_started))
        return [await first, await twin]

    with serve(fake) as server:
        first, twin = asyncio.run(run(server))
        assert first["text"].startswith("word0") and first["text"] != FULL
        assert twin == {"text": FULL, "error": None}
        assert len(fake.received) == 1
        assert saved_calls(server) == 1


def test_the_first_gets_the_whole_reply_when_the_twin_leaves(fake: FakeUpstream) -> None:
    async def run(url: str) -> list[dict[str, Any]]:
        first = asyncio.ensure_future(ask(url))
        await after_upstream_saw(fake, 1)
        leave = asyncio.Event()
        leave.set()
        twin = await ask(url, leave_when=leave)
        return [await first, twin]

    with serve(fake) as server:
        first, twin = asyncio.run(run(server.url))
        assert first == {"text": FULL, "error": None}
        assert twin["text"].startswith("word0")
        assert len(fake.received) == 1


def test_the_twin_of_a_request_that_left_before_the_first_token_still_shares_it(
    fake: FakeUpstream,
) -> None:
    fake.script = [text_reply(*WORDS, delay=0.3, gap=0.01)]

    async def run(server: LiveServer) -> dict[str, Any]:
        first = asyncio.ensure_future(ask(server.url))
        await after_upstream_saw(fake, 1)
        twin = asyncio.ensure_future(ask(server.url))
        await asyncio.to_thread(wait_for_twin, server)
        first.cancel()  # the first client hangs up while the model is still thinking
        return await twin

    with serve(fake) as server:
        twin = asyncio.run(run(server))
        assert twin == {"text": FULL, "error": None}
        assert len(fake.received) == 1
        assert saved_calls(server) == 1


@pytest.mark.parametrize(
    ("second", "conversation", "overrides"),
    [
        ([*MESSAGES[:1], {"role": "user", "content": "Tell me about the green arc."}], "c-1", {}),
        (MESSAGES, None, {}),
        (MESSAGES, "c-1", {"share_identical_requests": False}),
    ],
    ids=["different-messages", "no-conversation-id", "setting-off"],
)
def test_requests_that_are_not_twins_each_call_the_upstream(
    fake: FakeUpstream,
    second: list[dict[str, Any]],
    conversation: str | None,
    overrides: dict[str, Any],
) -> None:
    async def run(url: str) -> list[dict[str, Any]]:
        first = asyncio.ensure_future(ask(url, conversation=conversation))
        await after_upstream_saw(fake, 1)
        latest = await ask(url, second, conversation=conversation)
        return [await first, latest]

    with serve(fake, **overrides) as server:
        first, latest = asyncio.run(run(server.url))
        assert latest == {"text": FULL, "error": None}
        assert len(fake.received) == 2
        if conversation:  # newest wins: the older request of the conversation was superseded
            assert first["error"] is not None or first["text"] != FULL
        else:
            assert first == {"text": FULL, "error": None}
        assert saved_calls(server) == 0


def test_a_newer_request_supersedes_both_twins(fake: FakeUpstream) -> None:
    async def run(url: str) -> list[dict[str, Any]]:
        first = asyncio.ensure_future(ask(url))
        await after_upstream_saw(fake, 1)
        twin_started = asyncio.Event()
        twin = asyncio.ensure_future(ask(url, started=twin_started))
        await twin_started.wait()
        newer = [*MESSAGES, {"role": "assistant", "content": "Hm?"}, MESSAGES[1]]
        latest = await ask(url, newer)
        return [await first, await twin, latest]

    with serve(fake) as server:
        first, twin, latest = asyncio.run(run(server.url))
        assert latest == {"text": FULL, "error": None}
        for older in (first, twin):
            assert older["text"] != FULL
        assert len(fake.received) == 2


def test_the_upstream_is_closed_once_every_twin_has_left(fake: FakeUpstream) -> None:
    fake.script = [text_reply(*WORDS, gap=1.0)]  # a slow reply: both clients leave mid-way

    async def run(url: str) -> None:
        leave = asyncio.Event()
        first = asyncio.ensure_future(ask(url, leave_when=leave))
        await after_upstream_saw(fake, 1)
        twin_started = asyncio.Event()
        twin = asyncio.ensure_future(ask(url, started=twin_started, leave_when=leave))
        await twin_started.wait()
        leave.set()
        await asyncio.gather(first, twin)

    with serve(fake) as server:
        asyncio.run(run(server.url))
        assert fake.received[0].gone.wait(2), "the upstream was left open"
        assert len(fake.received) == 1
        assert not services(server.app).shared._live
