"""`perception-llm simulate` and `compare`: the emulator, against an endpoint or in process."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import ExitStack
from pathlib import Path

from emulator.compare import compare, failed_cells, format_markdown, format_terminal
from emulator.conformance import format_report
from emulator.simulate import SimulateOptions, simulate
from emulator.stream import EndpointError
from prompts.templates import TemplateError
from scenarios import Scenario, ScenarioError, load_scenario
from server.commands.common import (
    UsageError,
    endpoint_url_or_error,
    settings_or_error,
    templates_or_error,
)
from server.inprocess import running_server


def key_values(pairs: list[str], flag: str) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes K=V, got {pair!r}")
        result[key] = value
    return result


def load_scenarios(names: list[str]) -> list[Scenario]:
    try:
        return [load_scenario(name) for name in names]
    except ScenarioError as error:
        raise UsageError(str(error)) from None


def run_simulate(args: argparse.Namespace) -> int:
    (scenario,) = load_scenarios([args.scenario])
    if args.layout is not None:
        scenario = scenario.model_copy(update={"layout": args.layout})
    options = SimulateOptions(
        url=endpoint_url_or_error(args.url),
        api_key=args.api_key,
        model=args.model,
        speculative=args.speculative,
        headers=key_values(args.header, "--header"),
        query=key_values(args.query, "--query"),
        quiet=args.json,
    )
    try:
        report = asyncio.run(simulate(scenario, options))
    except EndpointError as error:
        raise UsageError(str(error)) from None
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ok"] else 1


def run_compare(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(args.scenarios)
    templates = [name.strip() for name in args.prompts.split(",") if name.strip()]
    if not templates:
        raise UsageError("--prompts needs at least one template name")
    with ExitStack() as stack:
        url, api_key = args.url, args.api_key
        if url is not None:
            endpoint_url_or_error(url)
        else:
            # The in-process server answers this tool's own requests: they are experiments, not
            # conversations, so they are never recorded into the capture store.
            settings = settings_or_error().model_copy(update={"capture": None})
            library = templates_or_error(settings)
            for name in templates:
                # Here, not by the endpoint: its refusal named the in-process server's passing
                # port ("http://127.0.0.1:44115/v1 offers: ..."), an address the user never gave.
                try:
                    library.get(name)
                except TemplateError as error:
                    raise UsageError(str(error)) from None
            url = stack.enter_context(running_server(settings)) + "/v1"
            api_key = settings.api_key.get_secret_value() if settings.api_key else None
        options = SimulateOptions(url=url, api_key=api_key, model=args.model, tool="compare")
        try:
            comparisons = asyncio.run(compare(scenarios, templates, options))
        except EndpointError as error:
            raise UsageError(str(error)) from None
    print(format_terminal(comparisons))
    if args.out:
        try:
            Path(args.out).write_text(format_markdown(comparisons, url), encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot write {args.out}: {error.strerror}") from None
        print(f"\nreport written to {args.out}")
    failed = failed_cells(comparisons)
    if failed:
        print(f"perception-llm: {failed} turns failed or fell back (see above)", file=sys.stderr)
        return 1
    return 0
