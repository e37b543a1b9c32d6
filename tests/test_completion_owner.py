"""The completion's one owner (issue 24): plain values in, one exit path out.

`Completion` is driven here directly over plain ASGI callables — no HTTP server, no Starlette
`Request` (the preparation thunk is the route's adapter until preparation takes plain values) —
and every way a completion can end releases everything exactly once: the slot, the conversation
registry's entry, the shared generation, the record's log line (one metrics count). Cancellation
from outside is re-raised, never swallowed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.types import Message

from server.app import create_app
from server.completion.lifecycle import CallFacts, Completion
from server.completion.preparation import Prepared, TemplateChoice, prepare_off_loop
from server.errors import UpstreamUnreachableError
from server.services import Services, services
from tests.conftest import make_settings
from tests.live import live_server

SCOPE = {"type": "http", "method": "POST"}  # what the response sees of the request
BODY = {"model": "echo", "messages": [{"role": "user", "content": "one two three four"}]}
LONG_STREAM = {  # 200 words, echoed one by one: still streaming when the test acts
    **BODY,
    "stream": True,
    "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(200))}],
}


def completions_counted(app_services: Services) -> float:
    return sum(
        sample.value
        for metric in app_services.metrics.completions.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def opened(
    app_services: Services, app: Any, body: dict[str, Any], conversation: str = "c1"
) -> Completion:
    raw = json.dumps(body).encode()
    headers = {"conversation-id": conversation, "content-type": "application/json"}
    facts = CallFacts.at_edge("req-1", raw, headers, "", capturing=False)
    choice = TemplateChoice.from_http(headers, {})

    def preparing() -> Awaitable[Prepared]:
        return prepare_off_loop(raw, choice, app_services)  # as the route does

    return await Completion.open(app_services, facts, preparing)


class Client:
    """An ASGI peer: records what is sent; `leave_after` body frames, it disconnects."""

    def __init__(self, leave_after: int | None = None, services: Services | None = None) -> None:
        self.services = services
        self.slots_at_end: int | None = None  # slots held when the reply's last write came
        self.slots_at_done: int | None = None  # ... and when `[DONE]` came (the SDK stops there)
        self.logged_at_done: float | None = None  # completions counted when `[DONE]` came
        self.sent: list[Message] = []
        self.leave_after = leave_after
        self.left = asyncio.Event()
        self.streaming = asyncio.Event()  # a frame of the reply has gone out

    async def receive(self) -> Message:
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        last = message["type"] == "http.response.body" and not message.get("more_body", False)
        if last and self.services is not None:
            self.slots_at_end = self.services.gate.active
        if b"data: [DONE]" in message.get("body", b"") and self.services is not None:
            self.slots_at_done = self.services.gate.active
            self.logged_at_done = completions_counted(self.services)
        bodies = [m for m in self.sent if m["type"] == "http.response.body" and m["body"]]
        if bodies:
            self.streaming.set()
        if self.leave_after is not None and len(bodies) >= self.leave_after:
            self.left.set()

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def released(app_services: Services, before: float) -> None:
    for _ in range(100):  # a cancelled shared generation forgets itself when its task ends
        if not len(app_services.shared):
            break
        await asyncio.sleep(0)
    assert app_services.gate.active == 0
    assert len(app_services.conversations) == 0 and not app_services.conversations._all
    assert len(app_services.shared) == 0
    assert completions_counted(app_services) == before + 1  # the record was logged once


def run(settings_overrides: dict[str, Any], scenario: Callable[[Services, Any], Any]) -> None:
    app = create_app(make_settings(**settings_overrides))
    app_services = services(app)

    async def main() -> None:
        await app_services.responder.start()
        try:
            await scenario(app_services, app)
        finally:
            await app_services.responder.aclose()

    asyncio.run(main())


def test_a_stream_that_runs_to_its_end_releases_everything_once() -> None:
    async def scenario(app_services: Services, app: Any) -> None:
        before = completions_counted(app_services)
        completion = await opened(app_services, app, {**BODY, "stream": True})
        assert app_services.gate.active == 1  # the slot is held from `open` on
        client = Client(services=app_services)
        await completion.respond(SCOPE, client.receive, client.send)
        assert client.slots_at_end == 0  # released before the client is told the reply ended
        # openai-python stops reading at [DONE]: by then the slot is free. The log line waits
        # for that last write, whose failure would change the outcome (the test below).
        assert client.slots_at_done == 0 and client.logged_at_done == before
        assert completion.record.outcome == "completed"
        assert client.body().endswith(b"data: [DONE]\n\n")
        assert b"four" in client.body()
        await released(app_services, before)

    run({}, scenario)


def test_a_client_that_stops_reading_before_done_is_not_logged_as_completed() -> None:
    """The last write ([DONE] and the end of the body) follows the release; if it times out,
    the client never had its answer, and the record says so."""

    class StopsReadingAtTheEnd(Client):
        async def send(self, message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await asyncio.Event().wait()  # a full socket buffer: this write never returns
            await super().send(message)

    async def scenario(app_services: Services, app: Any) -> None:
        before = completions_counted(app_services)
        completion = await opened(app_services, app, {**BODY, "stream": True})
        client = StopsReadingAtTheEnd(services=app_services)
        await completion.respond(SCOPE, client.receive, client.send)
        assert b"four" in client.body() and b"[DONE]" not in client.body()
        assert completion.record.outcome == "cancelled"
        await released(app_services, before)

    run({"send_timeout_seconds": 0.05}, scenario)


def test_a_non_streamed_reply_releases_everything_once() -> None:
    async def scenario(app_services: Services, app: Any) -> None:
        before = completions_counted(app_services)
        completion = await opened(app_services, app, BODY)
        client = Client(services=app_services)
        await completion.respond(SCOPE, client.receive, client.send)
        assert client.slots_at_end == 0  # released before the client has its answer
        reply = json.loads(client.body())
        assert "one two three four" in reply["choices"][0]["message"]["content"]
        await released(app_services, before)

    run({}, scenario)


def test_an_http_error_before_the_first_byte_releases_everything_once() -> None:
    # Without a fallback text, an upstream that cannot be reached is an HTTP error: raised
    # out of `respond` (the route's error handler answers it) after everything is released.
    async def scenario(app_services: Services, app: Any) -> None:
        before = completions_counted(app_services)
        completion = await opened(app_services, app, {**BODY, "model": "m", "stream": True})
        client = Client()
        with pytest.raises(UpstreamUnreachableError):
            await completion.respond(SCOPE, client.receive, client.send)
        assert client.sent == []  # nothing went out: the handler can still send the error
        await released(app_services, before)

    run({"upstream_base_url": "http://127.0.0.1:9/v1", "fallback_text": ""}, scenario)


def test_a_client_that_leaves_mid_stream_releases_everything_once() -> None:
    async def scenario(app_services: Services, app: Any) -> None:
        before = completions_counted(app_services)
        completion = await opened(app_services, app, LONG_STREAM)
        client = Client(leave_after=2)
        await completion.respond(SCOPE, client.receive, client.send)  # a normal end
        assert b"[DONE]" not in client.body()
        assert completion.record.outcome == "cancelled"
        await released(app_services, before)

    run({"echo_word_delay_ms": 5}, scenario)


def test_cancellation_from_outside_is_re_raised_after_the_release() -> None:
    async def scenario(app_services: Services, app: Any) -> None:
        before = completions_counted(app_services)
        completion = await opened(app_services, app, LONG_STREAM)
        client = Client()
        task = asyncio.ensure_future(completion.respond(SCOPE, client.receive, client.send))
        await client.streaming.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await released(app_services, before)

    run({"echo_word_delay_ms": 5}, scenario)


def test_an_identical_request_opened_before_the_first_responds_joins_it() -> None:
    # The leader's shared generation is registered when it opens, not when it starts
    # responding: an identical request arriving in between is its twin, and supersedes nothing
    # (it did, and both streams ended differently, when the source was chosen in `respond`).
    async def scenario(app_services: Services, app: Any) -> None:
        body = {**BODY, "stream": True}
        leader = await opened(app_services, app, body)
        twin = await opened(app_services, app, body)
        assert leader.shared is not None and twin.twin_of is leader.shared
        clients = [Client(), Client()]
        await asyncio.gather(
            *(
                c.respond(SCOPE, k.receive, k.send)
                for c, k in zip((leader, twin), clients, strict=True)
            )
        )
        for client in clients:
            assert client.body().endswith(b"data: [DONE]\n\n")
            assert b"four" in client.body() and b"superseded" not in client.body()
        assert twin.record.shared and not leader.record.shared
        assert app_services.gate.active == 0

    run({"share_identical_requests": True}, scenario)


def test_a_failed_preparation_releases_the_slot_and_registers_nothing() -> None:
    async def scenario(app_services: Services, app: Any) -> None:
        with pytest.raises(Exception, match="messages"):
            await opened(app_services, app, {"model": "echo"})
        assert app_services.gate.active == 0
        assert not app_services.conversations._all

    run({}, scenario)


@pytest.mark.parametrize("cors", [[], ["https://app.example"]])
def test_the_completion_route_is_one_path_with_cors_on_or_off(cors: list[str]) -> None:
    # CORS used to switch the route's dispatch before FastAPI off, leaving a second, untested
    # path; that dispatch is gone (issue 24: it saved nothing measurable on an idle machine), so
    # the route is FastAPI's own in every configuration, with CORS in the app's stack.
    settings = make_settings(cors_origins=cors, allowed_hosts=["127.0.0.1"])
    with live_server(settings) as server:
        assert not hasattr(server.app, "fast_chat")
        with httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            json={**BODY, "stream": True},
            headers={"origin": "https://app.example"},
            timeout=20,
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-request-id"]
            allowed = response.headers.get("access-control-allow-origin")
            assert allowed == ("https://app.example" if cors else None)
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        assert "four" in "".join(lines)
        refused = httpx.post(
            server.url + "/v1/chat/completions",
            content=b"{",
            headers={"origin": "https://app.example", "content-type": "application/json"},
        )
        assert refused.status_code == 400 and refused.headers["x-request-id"]
        assert refused.headers.get("access-control-allow-origin") == allowed
