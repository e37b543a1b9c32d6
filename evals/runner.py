"""Running a suite: every test x template x model x sample is one cell — one reply from the
endpoint (or the cache), checked by every assertion of its test — run with bounded concurrency.

Each cell is its own conversation (its own conversation id): the server's "newest request wins"
rule must not let one cell cut another short, and identical samples must not share one reply.
Requests carry `X-Perception-LLM-Tool: eval`, so a capturing server records them as ours.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp
import openai

from evals.assertions import Verdict, check
from evals.cache import judge_key, reply_key
from evals.calls import CallBudget, CallFailed, RetryPolicy, judge_reply, model_reply
from evals.judge import judge_messages, verdict_from
from evals.store import ExperimentStore
from evals.suite import AssertionSpec, Case, JudgeSpec, SuiteError
from prompts import estimate_tokens
from server.capture.tool_mark import TOOL_HEADER


@dataclass
class RunOptions:
    url: str  # the endpoint's base URL (…/v1)
    target: str  # what the cache keys on: the in-process upstream, or the --url
    api_key: str | None = None
    concurrency: int = 4
    use_cache: bool = True
    max_calls: int = 500
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    progress: TextIO = field(default_factory=lambda: sys.stderr)


@dataclass
class Cell:
    case: Case
    template: str
    model: str
    sample: int
    reply: str = ""
    ttft_ms: float | None = None
    cached: bool = False
    prompt_messages: list[Any] | None = None
    prompt_tokens: int | None = None
    error: str | None = None  # the model call failed: every assertion is errored
    verdicts: list[tuple[AssertionSpec, Verdict]] = field(default_factory=list)

    @property
    def reply_tokens(self) -> int:
        return estimate_tokens(self.reply)

    @property
    def errored(self) -> bool:
        return self.error is not None or any(v.errored for _, v in self.verdicts)


@dataclass(frozen=True)
class Plan:
    cells: int
    model_calls: int
    judge_calls: int


class Runner:
    def __init__(
        self,
        cases: list[Case],
        templates: list[str],
        models: list[str],
        repeat: int,
        judge: JudgeSpec | None,
        options: RunOptions,
        store: ExperimentStore | None,
    ) -> None:
        self.cells = [
            Cell(case, template, model, sample)
            for case in cases
            for template in templates
            for model in models
            for sample in range(repeat)
        ]
        self.judge = judge
        self.options = options
        self.store = store
        self.budget = CallBudget(options.max_calls)
        self.cache_hits = 0
        self.done = 0
        self._run_id = secrets.token_hex(4)

    def plan(self) -> Plan:
        judged = sum(
            1 for cell in self.cells for a in cell.case.assertions if a.type == "llm-rubric"
        )
        return Plan(len(self.cells), len(self.cells), judged)

    def judge_client(self) -> openai.AsyncOpenAI | None:
        if self.judge is None:
            return None
        key = "not-needed"
        if self.judge.api_key_env:
            key = os.environ.get(self.judge.api_key_env, "")
            if not key:
                raise SuiteError(f"judge.api_key_env: {self.judge.api_key_env} is not set")
        return openai.AsyncOpenAI(base_url=self.judge.url, api_key=key, max_retries=0, timeout=60)

    async def run(self) -> list[Cell]:
        judge = self.judge_client()
        client = openai.AsyncOpenAI(
            base_url=self.options.url,
            api_key=self.options.api_key or "not-needed",
            max_retries=0,
            timeout=60,
        )
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(index: int, cell: Cell) -> None:
            async with gate:
                await self.play(cell, index, client, session, judge)

        try:
            await asyncio.gather(*(one(i, cell) for i, cell in enumerate(self.cells)))
        finally:
            await client.close()
            await session.close()
            if judge is not None:
                await judge.close()
        return self.cells

    async def play(
        self,
        cell: Cell,
        index: int,
        client: openai.AsyncOpenAI,
        session: aiohttp.ClientSession,
        judge: openai.AsyncOpenAI | None,
    ) -> None:
        body = cell.case.body(cell.model, cell.template)
        headers = {"conversation-id": f"eval-{self._run_id}-{index}", TOOL_HEADER: "eval"}
        rendered = await self.render(session, body, headers)
        if rendered is not None:
            cell.prompt_messages = rendered.get("messages")
            tokens = rendered.get("prompt_tokens")
            cell.prompt_tokens = tokens if isinstance(tokens, int) else None
        key = reply_key(self.options.target, body, cell.prompt_messages, cell.sample)
        hit = await self.cached(key)
        if hit is not None:
            self.cache_hits += 1
            cell.reply, cell.ttft_ms, cell.cached = hit["reply"], hit["ttft_ms"], True
        else:
            per_cell = client.with_options(default_headers=headers)
            try:
                result = await self.options.retry.run(
                    "model", self.budget, lambda: model_reply(per_cell, body)
                )
            except CallFailed as error:
                cell.error = str(error)
            else:
                cell.reply = result.text
                cell.ttft_ms = None if result.ttft is None else result.ttft * 1000
                await self.remember(key, {"reply": cell.reply, "ttft_ms": cell.ttft_ms})
        for spec in cell.case.assertions:
            cell.verdicts.append((spec, await self.verdict(spec, cell, judge)))
        self.report_progress(cell)

    async def verdict(
        self, spec: AssertionSpec, cell: Cell, judge: openai.AsyncOpenAI | None
    ) -> Verdict:
        if cell.error is not None:
            return Verdict(None, f"no reply: {cell.error}")
        if spec.type != "llm-rubric":
            return check(spec, cell.case, cell.reply, cell.ttft_ms)
        if judge is None or self.judge is None:  # resolve_cases refuses such a suite
            return Verdict(None, "llm-rubric without a judge")
        messages = judge_messages(spec, cell.case, cell.reply)
        key = judge_key(self.judge.url, self.judge.model, messages, cell.sample)
        hit = await self.cached(key)
        if hit is not None:
            self.cache_hits += 1
            answer = str(hit["answer"])
        else:
            model = self.judge.model
            try:
                answer = await self.options.retry.run(
                    "judge", self.budget, lambda: judge_reply(judge, model, messages)
                )
            except CallFailed as error:
                return Verdict(None, str(error))
            await self.remember(key, {"answer": answer})
        return verdict_from(spec, answer)

    # The store is synchronous (SQLAlchemy Core); a commit can take milliseconds on a busy disk,
    # which on the event loop would hold up every other cell's stream: a worker thread does it.
    async def cached(self, key: str) -> dict[str, Any] | None:
        if self.store is None or not self.options.use_cache:
            return None
        return await asyncio.to_thread(self.store.cached, key)

    async def remember(self, key: str, value: dict[str, Any]) -> None:
        if self.store is not None:
            await asyncio.to_thread(self.store.remember, key, value)

    async def render(
        self, session: aiohttp.ClientSession, body: dict[str, Any], headers: dict[str, str]
    ) -> dict[str, Any] | None:
        """What the model is sent, from the endpoint's render API (None if it has none), asked
        with the cell's completion headers so the server prepares both alike."""
        key = self.options.api_key
        headers = headers | ({"Authorization": f"Bearer {key}"} if key else {})
        try:
            async with session.post(
                self.options.url.rstrip("/") + "/prompts/render", json=body, headers=headers
            ) as response:
                data = await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, ValueError, TimeoutError):
            return None
        return data if isinstance(data, dict) else None

    def report_progress(self, cell: Cell) -> None:
        self.done += 1
        passed = sum(1 for _, v in cell.verdicts if v.passed)
        errored = sum(1 for _, v in cell.verdicts if v.errored)
        state = f"{passed}/{len(cell.verdicts)} passed" + (
            f", {errored} errored" if errored else ""
        )
        self.options.progress.write(
            f"  [{self.done}/{len(self.cells)}] {cell.case.name} · {cell.template} · "
            f"{cell.model} #{cell.sample + 1}: {state}{' (cached)' if cell.cached else ''}\n"
        )
        self.options.progress.flush()
