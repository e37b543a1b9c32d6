"""`perception-llm compare`: the same scenarios through several prompt templates, side by side.

Each template plays the whole scenario (the conversation grows with that template's own
replies), through a server (`--url`, template chosen per request with the `prompt` body field)
or through this one started in-process on loopback with the configured response model. For
every turn it records the reply, the prompt-token estimate of what the model was sent (from
`POST /v1/prompts/render`) and time to first token, and writes a terminal summary and a
Markdown report.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp

from emulator.simulate import SimulateOptions, make_client
from emulator.stream import EndpointError, listed_model, run_stream
from scenarios import Scenario


@dataclass
class Cell:
    reply: str
    prompt_tokens: int | None
    ttft_ms: float | None
    error: str | None = None
    fallback: str | None = None  # the endpoint spoke its fallback line instead: why

    @property
    def shown(self) -> str:
        """The reply as the report shows it: an error, or a fallback marked as such."""
        if self.error:
            return self.error
        return f"[fallback: {self.fallback}] {self.reply}" if self.fallback else self.reply


@dataclass
class ScenarioComparison:
    scenario: Scenario
    templates: list[str]
    cells: dict[str, list[Cell]] = field(default_factory=dict)  # template -> one per turn


async def prompt_tokens(
    session: aiohttp.ClientSession,
    options: SimulateOptions,
    body: dict[str, Any],
    conversation_id: str,
) -> int | None:
    """Prompt-token estimate from the server's render endpoint (None if it has none). It is
    sent what the turn's completion was (headers, query, conversation id), so the server
    prepares both alike (server/completion/preparation.py)."""
    headers = {"conversation-id": conversation_id} | options.headers
    if options.api_key:
        headers["Authorization"] = f"Bearer {options.api_key}"
    render_url = options.url.rstrip("/") + "/prompts/render"
    try:
        async with session.post(
            render_url, json=body, headers=headers, params=options.query
        ) as response:
            if response.status != 200:
                return None
            data = await response.json()
    except (aiohttp.ClientError, ValueError):
        return None
    value = data.get("prompt_tokens") if isinstance(data, dict) else None
    return value if isinstance(value, int) else None


async def offered_templates(options: SimulateOptions) -> list[str] | None:
    """The template names the endpoint offers (`GET /v1/prompts`), or None when it has no such
    route (any other OpenAI-compatible endpoint: the `prompt` field is then its own business)."""
    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, headers=headers) as session,
            session.get(options.url.rstrip("/") + "/prompts") as response,
        ):
            if response.status != 200:
                return None
            data = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None  # unreachable endpoints are reported by the first real request
    listed = data.get("data") if isinstance(data, dict) else None
    if not isinstance(listed, list):
        return None
    return [item["name"] for item in listed if isinstance(item, dict) and "name" in item]


async def check_templates(templates: list[str], options: SimulateOptions) -> None:
    """Refuse a template the endpoint does not have before the first turn (not one 400 per
    turn and a report of zero tokens)."""
    offered = await offered_templates(options)
    for name in templates:
        if offered is not None and name not in offered:
            raise EndpointError(
                f"unknown prompt template {name!r}; {options.url} offers: {', '.join(offered)}"
            )


async def play(
    scenario: Scenario, template: str, options: SimulateOptions, progress: TextIO
) -> list[Cell]:
    conversation_id = f"compare-{scenario.name}-{template}"
    client = make_client(options, conversation_id)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    history = scenario.opening_messages()
    cells = []
    try:
        for index in range(len(scenario.turns)):
            messages = history + scenario.turn_messages(index)
            body: dict[str, Any] = {
                "model": options.model or scenario.model or "echo",  # see compare()
                "messages": messages,
                **scenario.extra_body,
                "prompt": template,
            }
            if scenario.tools:
                body["tools"] = scenario.tools
            result = await run_stream(client, body)
            tokens = await prompt_tokens(session, options, body, conversation_id)
            ttft = None if result.ttft is None else result.ttft * 1000
            cells.append(Cell(result.text, tokens, ttft, result.error, result.fallback))
            progress.write(
                f"  {scenario.name} · {template} · turn {index + 1}/{len(scenario.turns)} "
                + (
                    f"fallback: {result.fallback}\n"
                    if result.fallback
                    else f"answered by {result.model or '?'}\n"
                )
            )
            progress.flush()
            history = [*messages, result.assistant_message()]
    finally:
        await client.close()
        await session.close()
    return cells


async def compare(
    scenarios: list[Scenario],
    templates: list[str],
    options: SimulateOptions,
    progress: TextIO = sys.stderr,
) -> list[ScenarioComparison]:
    if options.model is None:  # the endpoint's own response model, not silently the offline one
        client = make_client(options, "compare-models")
        try:
            options.model = await listed_model(client)
        finally:
            await client.close()
        source = "the endpoint's" if options.model else "the endpoint lists none"
        progress.write(f"model: {options.model or 'echo'} ({source}; --model to choose)\n")
    await check_templates(templates, options)
    comparisons = []
    for scenario in scenarios:
        comparison = ScenarioComparison(scenario, templates)
        for template in templates:
            comparison.cells[template] = await play(scenario, template, options, progress)
        comparisons.append(comparison)
    return comparisons


def _number(value: float | int | None, unit: str) -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def format_terminal(comparisons: list[ScenarioComparison]) -> str:
    lines = []
    for comparison in comparisons:
        lines.append(f"\n== {comparison.scenario.name}: {comparison.scenario.description}")
        for index, turn in enumerate(comparison.scenario.turns):
            lines.append(f"\nturn {index + 1} · user: {turn.user}")
            for template in comparison.templates:
                cell = comparison.cells[template][index]
                stats = (
                    f"{_number(cell.prompt_tokens, ' tok')}, ttft {_number(cell.ttft_ms, ' ms')}"
                )
                lines.append(f"  {template:<12} ({stats}): {cell.shown}")
        totals = {
            t: sum(c.prompt_tokens or 0 for c in comparison.cells[t]) for t in comparison.templates
        }
        lines.append(
            "\nprompt tokens over the scenario: " + ", ".join(f"{t} {n}" for t, n in totals.items())
        )
    return "\n".join(lines)


def _cell_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(comparisons: list[ScenarioComparison], url: str) -> str:
    lines = [f"# Prompt comparison\n\nEndpoint: `{url}`\n"]
    for comparison in comparisons:
        templates = comparison.templates
        lines.append(f"## {comparison.scenario.name}\n\n{comparison.scenario.description}\n")
        lines.append("| turn | user | " + " | ".join(templates) + " |")
        lines.append("|---|---|" + "---|" * len(templates))
        for index, turn in enumerate(comparison.scenario.turns):
            cells = []
            for template in templates:
                cell = comparison.cells[template][index]
                stats = (
                    f"{_number(cell.prompt_tokens, ' tok')}, ttft {_number(cell.ttft_ms, ' ms')}"
                )
                cells.append(f"{_cell_text(cell.shown)}<br>*{stats}*")
            lines.append(f"| {index + 1} | {_cell_text(turn.user)} | " + " | ".join(cells) + " |")
        totals = [str(sum(c.prompt_tokens or 0 for c in comparison.cells[t])) for t in templates]
        lines.append("| | **prompt tokens, total** | " + " | ".join(totals) + " |\n")
    return "\n".join(lines)


def failed_cells(comparisons: list[ScenarioComparison]) -> int:
    """How many turns ended in an error or the endpoint's fallback line (either way no model
    answered: a comparison with such turns is not a success)."""
    return sum(
        1
        for comparison in comparisons
        for cells in comparison.cells.values()
        for cell in cells
        if cell.error or cell.fallback
    )


__all__ = ["EndpointError", "compare", "failed_cells", "format_markdown", "format_terminal"]
