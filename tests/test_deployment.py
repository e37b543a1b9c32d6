"""Three replicas behind the shipped nginx configuration, recording to one PostgreSQL (issue 26).

Real parts only: three `perception-llm serve` processes on loopback, Debian's nginx running
deploy/nginx/perception-llm.conf (tests/nginx_proxy.py renders only its addresses), the
loopback fake upstream (tests/fake_upstream.py) that sees every upstream call and when it is
closed, and PostgreSQL (PERCEPTION_TEST_POSTGRES; .ci/run starts it). The traffic is Tavus'
speculative inference, as `simulate --speculative` plays it, for many conversations at once:
an early partial transcript, the newer request that supersedes it, and an identical retry.

Then one replica is stopped (SIGTERM) and another killed (SIGKILL) while every conversation is
mid-stream: the stopped replica's streams end with [DONE], the killed one's fail at once with a
broken stream (never a hang), the third replica's streams finish whole, and every conversation,
old or new, keeps working on what is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from server.capture.schema import calls
from server.capture.store import engine_url
from tests.conftest import load_sample
from tests.fake_upstream import FakeUpstream, Received, text_reply
from tests.nginx_proxy import running_nginx
from tests.test_capture import postgres_url
from tests.test_deploy_files import require_nginx

SHORT = [f"w{i} " for i in range(30)]  # 1.5 s of reply: overlapping requests overlap
LONG = [f"w{i} " for i in range(80)]  # 4 s: every stream is mid-way when replicas stop
GAP = 0.05
CONVERSATIONS = 16  # with 3 replicas, at least two of them serve some (all but certain)
GRACE = "1"
SIMULATED = (
    "sim-",
    "tavus-openai-compat-test",
)  # conversation ids that `simulate` sends  # seconds a SIGTERM'd replica lets its streams run before ending them


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[str]
    port: int
    log: list[str] = field(default_factory=list)


def start_replicas(fake: FakeUpstream, database: str, count: int) -> list[Replica]:
    processes = []
    for index in range(count):
        env = {
            **os.environ,
            "PERCEPTION_LLM_UPSTREAM_BASE_URL": fake.base_url,
            "PERCEPTION_LLM_UPSTREAM_CHECK": "false",
            "PERCEPTION_LLM_CAPTURE": database,
            "PERCEPTION_LLM_REPLICA": f"replica-{index}",
            "PERCEPTION_LLM_SHUTDOWN_GRACE_SECONDS": GRACE,
        }
        command = [sys.executable, "-m", "server.cli", "serve", "--port", "0"]
        processes.append(subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env))
    replicas = []
    for index, process in enumerate(processes):
        assert process.stderr is not None
        lines: list[str] = []
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if match:
                break
        else:
            raise AssertionError(f"replica {index} did not start:\n{''.join(lines)}")
        replica = Replica(f"replica-{index}", process, int(match.group(1)), lines)
        # Keep reading its log (a full pipe would stall it), for the assertions' messages.
        threading.Thread(target=replica.log.extend, args=(process.stderr,), daemon=True).start()
        replicas.append(replica)
    return replicas


@pytest.fixture
def database() -> Iterator[str]:
    url = postgres_url()
    engine = create_engine(engine_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS captured_calls, capture_schema"))
    engine.dispose()
    yield url


def captured(database: str, count: int, simulated: bool = False) -> list[dict[str, Any]]:
    """The captured calls once at least `count` are written (each replica's writer batches);
    those of the `simulate` run only when `simulated`, else all others."""
    engine = create_engine(engine_url(database))
    try:
        deadline = time.monotonic() + 20
        while True:
            with engine.connect() as connection:
                rows = [dict(r._mapping) for r in connection.execute(select(calls))]
            rows = [r for r in rows if str(r["conversation_id"]).startswith(SIMULATED) == simulated]
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)
    finally:
        engine.dispose()


def body(words: str) -> dict[str, Any]:
    sample = load_sample("raven0-documented")
    messages = [*sample["messages"][:-1], {"role": "user", "content": words}]
    return {**sample, "model": "up-model", "messages": messages}


@dataclass
class Stream:
    """One streamed completion as the client saw it."""

    payloads: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def text(self) -> str:
        return "".join(
            p["choices"][0]["delta"].get("content") or ""
            for p in self.payloads
            if isinstance(p, dict) and p.get("choices")
        )

    @property
    def done(self) -> bool:
        return bool(self.payloads) and self.payloads[-1] == "[DONE]"

    @property
    def error_codes(self) -> list[str]:
        return [
            p["error"].get("code") for p in self.payloads if isinstance(p, dict) and "error" in p
        ]


async def stream(
    client: httpx.AsyncClient,
    base: str,
    words: str,
    conversation: str | None,
    into: Stream | None = None,
) -> Stream:
    """POST a streamed completion through nginx, reading it to its end (or its failure)."""
    result = into or Stream()
    headers = {"x-request-id": uuid.uuid4().hex}
    if conversation is not None:
        # Tavus sends both spellings; the `under-` conversation sends only `conversation_id`,
        # which nginx drops unless `underscores_in_headers` is on (then it hashes it, too).
        spelling = "conversation_id" if conversation.startswith("under-") else "conversation-id"
        headers[spelling] = conversation
    try:
        async with client.stream(
            "POST", base + "/v1/chat/completions", json=body(words), headers=headers
        ) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                    result.payloads.append(data if data == "[DONE]" else json.loads(data))
                    if result.text:
                        result.started.set()
    except httpx.TransportError as error:  # a broken stream (the killed replica's)
        result.error = error
    finally:
        result.started.set()
    return result


def upstream_calls(fake: FakeUpstream, words: str) -> list[Received]:
    """The upstream requests the replicas made for the user turn `words`."""
    return [r for r in list(fake.received) if words in json.dumps(r.body)]


async def speculative_turn(client: httpx.AsyncClient, base: str, conversation: str) -> None:
    """Tavus' speculative inference for one turn: a partial transcript starts streaming, the
    full one supersedes it; then an identical retry of a new request arrives while it runs."""
    partial = Stream()
    early = asyncio.ensure_future(
        stream(client, base, f"{conversation} partial", conversation, partial)
    )
    await partial.started.wait()
    full = await stream(client, base, f"{conversation} complete", conversation)
    await early
    assert partial.error_codes == ["superseded"] and partial.done, partial.payloads
    assert full.text == "".join(SHORT) and full.done
    retry = f"{conversation} retry"
    twins = await asyncio.gather(*(stream(client, base, retry, conversation) for _ in range(2)))
    assert all(t.text == "".join(SHORT) and t.done for t in twins)


def test_three_replicas_behind_nginx(tmp_path: Path, database: str) -> None:
    require_nginx()
    with FakeUpstream().serving() as fake:
        fake.script = [text_reply(*SHORT, gap=GAP)]
        replicas = start_replicas(fake, database, 3)
        try:
            with running_nginx(tmp_path, [r.port for r in replicas]) as (base, _):
                run_deployment(base, fake, database, replicas)
        finally:
            for replica in replicas:
                if replica.process.poll() is None:
                    replica.process.kill()
                replica.process.wait(10)


def run_deployment(base: str, fake: FakeUpstream, database: str, replicas: list[Replica]) -> None:
    # The real tool first: `simulate --speculative` through nginx passes, and its count of
    # upstream calls saved is read from the replica that served the conversation (it asks
    # /metrics with the conversation's id, which nginx hashes like the completions).
    fake.script = [text_reply(*SHORT, gap=0.01)]
    command = [sys.executable, "-m", "server.cli", "simulate", "--speculative", "--json"]
    simulated = subprocess.run(
        [*command, "--url", base + "/v1"], capture_output=True, text=True, timeout=120
    )
    assert simulated.returncode == 0, simulated.stdout[-2000:] + simulated.stderr[-2000:]
    report = json.loads(simulated.stdout)
    sim_rows = captured(database, report["requests"], True)
    (served_by,) = {r["replica"] for r in sim_rows if r["conversation_id"].startswith("sim-")}
    (port,) = [r.port for r in replicas if r.name == served_by]
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    saved = re.search(r"^perception_llm_upstream_calls_saved_total (\S+)$", metrics, re.M)
    assert saved is not None and report["upstream_calls_saved"] == float(saved.group(1))
    fake.script = [text_reply(*SHORT, gap=GAP)]
    conversations = [f"conv-{i}-{uuid.uuid4().hex[:6]}" for i in range(CONVERSATIONS - 1)]
    conversations.append(f"under-{uuid.uuid4().hex[:6]}")

    async def speculate() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(speculative_turn(client, base, c) for c in conversations))
            for index in range(6):  # no conversation id: spread, not piled on one replica
                assert (await stream(client, base, f"keyless {index}", None)).done

    asyncio.run(speculate())

    # Superseded requests were cancelled upstream as on one process; retries shared one call.
    for conversation in conversations:
        (early,) = upstream_calls(fake, f"{conversation} partial")
        assert early.gone.wait(5), f"{conversation}: the superseded upstream call is still open"
        assert len(upstream_calls(fake, f"{conversation} retry")) == 1
    rows = captured(database, CONVERSATIONS * 4 + 6)
    names = {r.name for r in replicas}
    assert {row["replica"] for row in rows} <= names and len(rows) == CONVERSATIONS * 4 + 6
    # Every captured call names its replica; each conversation stayed on one.
    home: dict[str, str] = {}
    for conversation in conversations:
        mine = [row for row in rows if row["conversation_id"] == conversation]
        served_by = {row["replica"] for row in mine}
        assert len(served_by) == 1, f"{conversation} was served by {served_by}"
        home[conversation] = served_by.pop()
        outcomes = Counter(row["outcome"] for row in mine)
        assert outcomes == {"superseded": 1, "completed": 3}
        assert sum(row["shared"] for row in mine) == 1
    assert len({row["replica"] for row in rows if row["conversation_id"] is None}) >= 2

    # Stop one replica and kill another while every conversation is mid-stream.
    load = Counter(home.values())
    stopped, killed = [name for name, _ in load.most_common(2)]
    assert len(load) >= 2, f"all conversations hashed to one replica: {load}"
    process = {r.name: r.process for r in replicas}
    fake.script = [text_reply(*LONG, gap=GAP)]

    async def failover() -> dict[str, Stream]:
        async with httpx.AsyncClient(timeout=30) as client:
            streams = {c: Stream() for c in conversations}
            tasks = [
                asyncio.ensure_future(stream(client, base, f"{c} go on", c, streams[c]))
                for c in conversations
            ]
            await asyncio.gather(*(s.started.wait() for s in streams.values()))
            process[stopped].send_signal(signal.SIGTERM)
            process[killed].kill()
            await asyncio.gather(*tasks)
            return streams

    streams = asyncio.run(failover())
    for conversation, result in streams.items():
        served_by = home[conversation]
        if served_by == killed:  # a clean error at once: the stream is cut, never left hanging
            assert isinstance(result.error, httpx.RemoteProtocolError), (conversation, result)
        elif served_by == stopped:  # drained: ended by the replica with a finish and [DONE]
            assert result.error is None and result.done, (conversation, result.payloads[-3:])
            assert "".join(LONG).startswith(result.text) and result.text
        else:  # the surviving replica's streams are untouched
            assert result.error is None and result.done and result.text == "".join(LONG)
    assert process[stopped].wait(20) == 0
    survivor = (names - {stopped, killed}).pop()
    for conversation in conversations:  # no upstream call outlives its stream
        (call,) = upstream_calls(fake, f"{conversation} go on")
        if home[conversation] != survivor:
            assert call.gone.wait(5), f"{conversation}: upstream call left open"

    # What is left serves every conversation: the moved ones and new ones.
    fake.script = [text_reply(*SHORT, gap=0)]
    fresh = [f"new-{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]

    async def after() -> list[Stream]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(stream(client, base, f"{c} after", c) for c in conversations + fresh)
            )

    for result in asyncio.run(after()):
        assert result.error is None and result.done and result.text == "".join(SHORT)
    # The killed replica's streams were never finished, so never recorded; the rest were.
    expected = len(rows) + CONVERSATIONS - load[killed] + len(conversations + fresh)
    rows = captured(database, expected)
    assert len(rows) == expected
    after_rows = [row for row in rows if row["user_text"].endswith(" after")]
    assert {row["replica"] for row in after_rows} == {survivor}
