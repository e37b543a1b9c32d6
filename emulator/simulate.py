"""`perception-llm simulate`: play a scenario against any endpoint as Tavus would, and report.

For each turn the conversation grows with the endpoint's own replies, as in a real call. With
`--speculative`, progressively longer partial transcripts of each turn are sent as overlapping
requests (same conversation id), all but the last abandoned mid-stream, like Tavus' speculative
inference. At the end: the conformance report, with the two probes Tavus' behaviour depends on
(a bad request's error body, and an abandoned request not breaking the endpoint).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import openai

from emulator.stream import StreamResult, run_stream
from scenarios import Scenario

CHECKS = {
    "http_status": "requests answered 200",
    "content_type": "Content-Type: text/event-stream",
    "sse_framing": "one `data:` line per event, no id:/event:/retry: fields",
    "chunk_json": "every chunk is a chat.completion.chunk JSON object",
    "done_terminator": "the stream ends with data: [DONE]",
    "role_first": "the first delta carries role: assistant",
    "single_finish_reason": "exactly one finish_reason",
    "constant_id": "one id/created/model per stream",
    "tool_call_deltas": "tool-call deltas carry index, id, type, function name",
    "stream_error": "no error events",
    "error_body": "a bad request gets an OpenAI error body",
    "abandoned_request": "an abandoned stream leaves the endpoint serving",
}


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


@dataclass
class TurnReport:
    index: int
    user: str
    reply: str
    ttft_ms: float | None
    total_ms: float
    tool_calls: list[dict[str, Any]]
    partials_abandoned: int = 0


def make_client(options: SimulateOptions, conversation_id: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=options.url,
        api_key=options.api_key or "not-needed",
        default_headers={"conversation-id": conversation_id, **options.headers},
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
        self.probe_problems: dict[str, list[str]] = {"error_body": [], "abandoned_request": []}
        self.client = make_client(options, "sim-" + secrets.token_hex(6))

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
            "model": self.options.model or self.scenario.model or "echo",
            "messages": messages,
            **self.scenario.extra_body,
            **self.options.extra_body,
        }
        if self.scenario.tools:
            body["tools"] = self.scenario.tools
        return body

    async def stream(self, messages: list[dict[str, Any]], **kwargs: Any) -> StreamResult:
        result = await run_stream(self.client, self.body(messages), **kwargs)
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

    async def turn(
        self, history: list[dict[str, Any]], index: int
    ) -> tuple[TurnReport, list[dict[str, Any]]]:
        turn = self.scenario.turns[index]
        self.progress(f"\nturn {index + 1}/{len(self.scenario.turns)} > user: {turn.user}\n")
        self.say("  reply: ")
        abandoned = await self.speculate(history, index) if self.options.speculative else 0
        messages = history + self.scenario.turn_messages(index)
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
        ttft = None if first.ttft is None else first.ttft * 1000
        total = (first.total + (result.total if result is not first else 0)) * 1000
        shown = "-" if ttft is None else f"{ttft:.0f} ms"
        self.say("\n")
        self.progress(
            f"  time to first token {shown}, total {total:.0f} ms"
            + (f", {abandoned} speculative requests abandoned" if abandoned else "")
            + "\n"
        )
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
        history = self.scenario.opening_messages()
        started = time.perf_counter()
        turns = []
        self.progress(f"scenario {self.scenario.name} against {self.options.url}\n")
        for index in range(len(self.scenario.turns)):
            report, history = await self.turn(history, index)
            turns.append(report)
        self.progress("\nprobing: bad request, abandoned request\n")
        await self.probe_error_body()
        await self.probe_abandoned(self.scenario.opening_messages())
        await self.client.close()
        return self.report(turns, time.perf_counter() - started)

    def report(self, turns: list[TurnReport], elapsed: float) -> dict[str, Any]:
        found: dict[str, list[str]] = {name: [] for name in CHECKS}
        for result in self.results:
            for problem in result.problems:
                name, _, detail = problem.partition(": ")
                found.setdefault(name, []).append(detail)
        for name, problems in self.probe_problems.items():
            found[name].extend(problems)
        checks = [
            {
                "name": name,
                "description": CHECKS.get(name, name),
                "ok": not problems,
                "problems": sorted(set(problems))[:5],
            }
            for name, problems in found.items()
        ]
        return {
            "url": self.options.url,
            "scenario": self.scenario.name,
            "requests": len(self.results),
            "seconds": round(elapsed, 3),
            "turns": [turn.__dict__ for turn in turns],
            "checks": checks,
            "ok": all(check["ok"] for check in checks),
        }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"\nconformance of {report['url']} ({report['requests']} requests):"]
    for check in report["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        lines.append(f"  {mark} {check['description']}")
        lines.extend(f"       - {problem}" for problem in check["problems"])
    lines.append(
        "result: "
        + (
            "the endpoint meets the contract Tavus relies on"
            if report["ok"]
            else "the endpoint breaks the contract Tavus relies on"
        )
    )
    return "\n".join(lines)


async def simulate(
    scenario: Scenario, options: SimulateOptions, out: TextIO = sys.stdout
) -> dict[str, Any]:
    """Run `scenario`; raises `EndpointError` when the endpoint cannot be used at all."""
    return await Simulation(scenario, options, out).run()
