"""`perception-llm simulate`: play a scenario against any endpoint as Tavus would, and report.

Each turn grows the conversation with the endpoint's own replies, as in a call. `--speculative`
sends progressively longer partial transcripts of each turn as overlapping requests (one
conversation id), all but the last abandoned mid-stream, like Tavus' speculative inference. At
the end: the conformance report, with the two probes Tavus' behaviour depends on (a bad
request's error body, and an abandoned request not breaking the endpoint)."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import openai

from emulator.conformance import CHECKS, conformance, emotion_problems
from emulator.endpoint_metrics import upstream_calls_saved
from emulator.stream import StreamResult, listed_model, run_stream
from scenarios import Scenario
from server.capture.tool_mark import TOOL_HEADER

CONFIG_CHECK_ID = "tavus-openai-compat-test"


@dataclass
class SimulateOptions:
    url: str
    api_key: str | None = None
    model: str | None = None
    speculative: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False  # no live text (for --json)
    tool: str = "simulate"  # the mark a captured call keeps (server/capture/tool_mark.py)


@dataclass
class TurnReport:
    index: int
    user: str
    reply: str
    ttft_ms: float | None
    total_ms: float
    tool_calls: list[dict[str, Any]]
    partials_abandoned: int = 0
    fallback: str | None = None  # the endpoint spoke its fallback line: why (no model reply)


def make_client(options: SimulateOptions, conversation_id: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=options.url,
        api_key=options.api_key or "not-needed",
        default_headers={"conversation-id": conversation_id, TOOL_HEADER: options.tool}
        | options.headers,
        default_query=options.query or None,
        max_retries=0,
        timeout=30,
    )


class Simulation:
    def __init__(self, scenario: Scenario, options: SimulateOptions, out: TextIO = sys.stdout):
        self.scenario = scenario
        self.options = options
        self.out = out
        self.results: list[StreamResult] = []
        self.probe_problems: dict[str, list[str]] = {
            "error_body": [],
            "abandoned_request": [],
            "config_check": [],
        }
        self.replies: list[StreamResult] = []  # the replies a user would hear
        self.saved_calls: float | None = None
        self.conversation_id = "sim-" + secrets.token_hex(6)
        self.client = make_client(options, self.conversation_id)
        self.model = options.model or scenario.model  # else the endpoint's, found by run()

    def progress(self, text: str) -> None:
        """Where the run is: on stdout, or on stderr when stdout carries the JSON report."""
        stream = sys.stderr if self.options.quiet else self.out
        stream.write(text)
        stream.flush()

    def say(self, text: str) -> None:
        """Reply text as it streams (not with --json)."""
        if not self.options.quiet:
            self.out.write(text)
            self.out.flush()

    def body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model or "echo",
            "messages": messages,
            **self.scenario.extra_body,
            **self.options.extra_body,
        }
        if self.scenario.tools:
            body["tools"] = self.scenario.tools
        return body

    async def stream(self, messages: list[dict[str, Any]], **kwargs: Any) -> StreamResult:
        result = await run_stream(self.client, self.body(messages), **kwargs)
        if kwargs.get("abandon_after_first_chunk"):
            # Tavus drops this request anyway: an error event in it (e.g. "superseded by a newer
            # request", the newest-wins rule) is no fault; its framing still has to be right.
            result.problems = [p for p in result.problems if not p.startswith("stream_error:")]
        self.results.append(result)
        return result

    async def speculate(self, history: list[dict[str, Any]], index: int) -> int:
        """Overlapping partial-transcript requests, each abandoned mid-stream; how many."""
        words = self.scenario.turns[index].user.split()
        cuts = sorted({max(1, len(words) * k // 4) for k in (1, 2, 3)} - {len(words)})
        tasks = []
        for cut in cuts:
            partial = self.scenario.turn_messages(index, " ".join(words[:cut]))
            tasks.append(
                asyncio.ensure_future(
                    self.stream(history + partial, abandon_after_first_chunk=True)
                )
            )
            await asyncio.sleep(0.05)  # the user keeps talking: the next partial overlaps
        await asyncio.gather(*tasks)
        return len(cuts)

    async def retried(self, messages: list[dict[str, Any]]) -> StreamResult:
        """The turn's request, then an identical retry while it is in flight (as Tavus retries);
        the first is abandoned after its first chunk, the retry must still get the whole reply."""
        first = asyncio.ensure_future(self.stream(messages, abandon_after_first_chunk=True))
        await asyncio.sleep(0)  # let the first request go out before its retry
        retry = await self.stream(messages, on_text=self.say)
        await first
        problems = self.probe_problems.setdefault("identical_retry", [])  # now exercised
        if retry.error or not retry.finish_reasons:
            detail = retry.error or "no finish_reason"
            problems.append(f"the retry did not get a whole reply: {detail}")
        return retry

    async def turn(
        self, history: list[dict[str, Any]], index: int
    ) -> tuple[TurnReport, list[dict[str, Any]]]:
        turn = self.scenario.turns[index]
        self.progress(f"\nturn {index + 1}/{len(self.scenario.turns)} > user: {turn.user}\n")
        self.say("  reply: ")
        abandoned = await self.speculate(history, index) if self.options.speculative else 0
        messages = history + self.scenario.turn_messages(index)
        if self.options.speculative:
            result = await self.retried(messages)
        else:
            result = await self.stream(messages, on_text=self.say)
        first = result
        if result.tool_calls:
            names = ", ".join(call["function"]["name"] for call in result.tool_calls.values())
            self.say(f"[tool call: {names}] ")
            messages = (
                messages
                + [result.assistant_message()]
                + [
                    {
                        "role": "tool",
                        "tool_call_id": call["id"],
                        "content": turn.tool_result or '{"ok": true}',
                    }
                    for call in result.tool_calls.values()
                ]
            )
            result = await self.stream(messages, on_text=self.say)
        self.replies.append(result)
        ttft = None if first.ttft is None else first.ttft * 1000
        total = (first.total + (result.total if result is not first else 0)) * 1000
        shown = "-" if ttft is None else f"{ttft:.0f} ms"
        self.say("\n")
        self.progress(
            f"  answered by {result.model or '?'}, time to first token {shown}, "
            f"total {total:.0f} ms"
            + (f", {abandoned} speculative requests abandoned" if abandoned else "")
            + "\n"
        )
        fallback = first.fallback or result.fallback
        if fallback:
            self.progress(f"  fallback: {fallback} (the line above is not the model's reply)\n")
        if result.error:
            self.progress(f"  error: {result.error}\n")
        report = TurnReport(
            index,
            turn.user,
            result.text,
            ttft,
            total,
            [first.tool_calls[i] for i in sorted(first.tool_calls)],
            abandoned,
            fallback,
        )
        return report, [*messages, result.assistant_message()]

    async def probe_error_body(self) -> None:
        problems = self.probe_problems["error_body"]
        try:
            await self.client.chat.completions.create(
                model=self.body([])["model"],
                messages=[{"role": "bogus-role", "content": 1}],  # type: ignore[list-item, misc]
                stream=True,
            )
            problems.append("a request with an invalid message was accepted")
        except openai.APIStatusError as error:
            try:
                body = error.response.json()
            except ValueError:
                body = None
            error_object = body.get("error") if isinstance(body, dict) else None
            if not (400 <= error.status_code < 500):
                problems.append(f"invalid request answered {error.status_code}, not 4xx")
            if not (
                isinstance(error_object, dict) and isinstance(error_object.get("message"), str)
            ):
                problems.append('error body is not {"error": {"message": ...}}')
        except openai.APIConnectionError:
            problems.append("the connection failed on a bad request")

    async def probe_abandoned(self, history: list[dict[str, Any]]) -> None:
        problems = self.probe_problems["abandoned_request"]
        messages = history + self.scenario.turn_messages(0)
        await run_stream(self.client, self.body(messages), abandon_after_first_chunk=True)
        follow_up = await run_stream(self.client, self.body(messages))
        if follow_up.error or follow_up.problems:
            problems.append(
                f"after an abandoned stream the next request failed: {follow_up.problems[:1]}"
            )

    async def run(self) -> dict[str, Any]:
        try:
            return await self._run()
        finally:
            await self.client.close()

    async def _run(self) -> dict[str, Any]:
        history = self.scenario.opening_messages()
        started = time.perf_counter()
        turns = []
        self.progress(f"scenario {self.scenario.name} against {self.options.url}\n")
        if self.model is None:
            listed = await listed_model(self.client)
            self.model = listed or "echo"
            source = "the endpoint's first listed" if listed else "the endpoint lists none"
            self.progress(f"model: {self.model} ({source}; --model to choose)\n")
        saved_before = await self.calls_saved()
        if self.scenario.opens_before_user:
            self.progress("\nbefore the user speaks (system text and greeting only)\n")
            self.say("  reply: ")
            opening = await self.stream(history, on_text=self.say)
            self.replies.append(opening)
            self.say("\n")
        for index in range(len(self.scenario.turns)):
            report, history = await self.turn(history, index)
            turns.append(report)
        self.progress("\nprobing: configuration check, bad request, abandoned request\n")
        await self.probe_config_check()
        await self.probe_error_body()
        await self.probe_abandoned(self.scenario.opening_messages())
        saved_after = await self.calls_saved()
        if saved_before is not None and saved_after is not None:
            self.saved_calls = saved_after - saved_before
        return self.report(turns, time.perf_counter() - started)

    async def calls_saved(self) -> float | None:
        """Upstream calls saved by sharing (None for other endpoints), asked with the
        conversation's id so a balancer hashing it asks the replica that served it."""
        options = self.options
        return await upstream_calls_saved(options.url, options.api_key, self.conversation_id)

    async def probe_config_check(self) -> None:
        """Tavus validates a persona's LLM settings with this conversation id; the endpoint must
        answer it like any request (perception-llm answers it without calling its model)."""
        problems = self.probe_problems["config_check"]
        client = make_client(self.options, CONFIG_CHECK_ID)
        try:
            messages = [*self.scenario.opening_messages(), {"role": "user", "content": "Hello"}]
            result = await run_stream(client, self.body(messages))
        finally:
            await client.close()
        if result.error or result.problems or not (result.text or result.tool_calls):
            detail = result.error or (result.problems[:1] or ["an empty reply"])[0]
            problems.append(f"the configuration check failed: {detail}")

    def report(self, turns: list[TurnReport], elapsed: float) -> dict[str, Any]:
        found: dict[str, list[str]] = {name: [] for name in CHECKS}
        for result in self.results:
            for problem in result.problems:
                name, _, detail = problem.partition(": ")
                found.setdefault(name, []).append(detail)
        for name, problems in self.probe_problems.items():
            found[name].extend(problems)
        found["emotion_tag"].extend(emotion_problems(self.scenario, self.replies))
        exercised = {
            "tool_call_deltas": any(result.tool_calls for result in self.results),
            "emotion_tag": self.scenario.phoenix4,
            "identical_retry": "identical_retry" in self.probe_problems,
        }
        return {
            "url": self.options.url,
            "scenario": self.scenario.name,
            "requests": len(self.results),
            "seconds": round(elapsed, 3),
            "upstream_calls_saved": self.saved_calls,
            "fallbacks": sorted({r.fallback for r in self.replies if r.fallback}),
            "turns": [turn.__dict__ for turn in turns],
            **conformance(found, exercised),
        }


async def simulate(
    scenario: Scenario, options: SimulateOptions, out: TextIO = sys.stdout
) -> dict[str, Any]:
    """Run `scenario`; raises `EndpointError` when the endpoint cannot be used at all."""
    return await Simulation(scenario, options, out).run()
