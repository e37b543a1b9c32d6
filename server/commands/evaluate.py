"""`perception-llm eval`: run an eval suite (or the last captured conversations) over templates
and models, report, keep the run, and exit 0 (passed), 1 (a template under the threshold) or
2 (a bad suite, or an incomplete run: errored cells)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from evals.calls import RetryPolicy, listed_by
from evals.captured import captured_scenario, recent_conversations
from evals.report import Summary, summarise
from evals.runner import Runner, RunOptions
from evals.store import DEFAULT_URL, ExperimentStore
from evals.suite import AssertionSpec, Case, Suite, SuiteError, make_case, read_suite, resolve_cases
from evals.views import format_html, format_terminal
from prompts.templates import TemplateError, TemplateLibrary
from server.capture.settings import DEFAULT_CAPTURE_URL
from server.capture.store import CaptureStore, CaptureStoreError
from server.commands.common import UsageError, endpoint_url_or_error, settings_or_error
from server.inprocess import running_server
from server.settings import Settings


def suite_path(name: str, stack: ExitStack) -> Path:
    """A suite file, or a shipped example by name (`perception-basics`)."""
    path = Path(name)
    if path.is_file() or path.suffix:
        return path
    shipped = files("evals").joinpath("examples", f"{name}.yaml")
    if not shipped.is_file():
        raise UsageError(f"no suite file or shipped suite {name!r} (shipped: perception-basics)")
    return stack.enter_context(as_file(files("evals").joinpath("examples"))) / f"{name}.yaml"


def open_store(url: str) -> ExperimentStore:
    try:
        store = CaptureStore(url)
        store.upgrade()
    except CaptureStoreError as error:
        raise UsageError(str(error)) from None
    return ExperimentStore(store)


def from_capture(store: ExperimentStore, count: int, suite: Suite) -> list[Case]:
    cases = []
    for conversation in recent_conversations(store.store, count):
        try:
            scenario = captured_scenario(store.store, conversation)
        except SuiteError as error:
            print(f"skipped {error}", file=sys.stderr)
            continue
        assertions = list(suite.default_test.assertions) or [
            AssertionSpec(type="no-unprompted-appearance")
        ]
        if scenario.phoenix4 and not any(a.type == "emotion-tag" for a in assertions):
            assertions.append(AssertionSpec(type="emotion-tag"))
        cases.append(make_case(scenario, None, scenario.name, assertions))
    if not cases:
        raise UsageError(f"no captured conversation to replay in {store.store.url}")
    return cases


def template_dir(suite: Suite, base: Path, settings: Settings, stack: ExitStack) -> Settings:
    """Templates given as files join the user's template directory (a temporary copy)."""
    files_named = [t for t in suite.templates if t.endswith(".j2")]
    if not files_named:
        return settings
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perception-eval-")))
    if settings.prompts_dir is not None:
        shutil.copytree(settings.prompts_dir, folder, dirs_exist_ok=True)
    for index, name in enumerate(files_named):
        source = base / name if (base / name).is_file() else Path(name)
        if not source.is_file():
            raise UsageError(f"templates[{index}]: no template file {name}")
        shutil.copyfile(source, folder / source.name)
    return settings.model_copy(update={"prompts_dir": folder})


def check_templates(names: list[str], settings: Settings, where: str) -> None:
    try:
        library = TemplateLibrary(settings.prompts_dir)
    except TemplateError as error:
        raise UsageError(str(error)) from None
    for index, name in enumerate(names):
        try:
            library.get(name)
        except TemplateError as error:
            raise UsageError(f"{where}: templates[{index}]: {error}") from None


def write_reports(args: argparse.Namespace, summary: Summary, meta: dict[str, Any]) -> None:
    outputs: list[tuple[str | None, Callable[[], str]]] = [
        (args.json, lambda: json.dumps({**meta, **summary.as_dict()}, indent=2) + "\n"),
        (args.html, lambda: format_html(summary, meta)),
    ]
    for target, render in outputs:
        if target:
            try:
                Path(target).write_text(render(), encoding="utf-8")
            except OSError as error:
                raise UsageError(f"cannot write {target}: {error.strerror}") from None


def check_remote_templates(names: list[str], url: str, api_key: str | None, where: str) -> None:
    """Names the endpoint does not list are refused before the run (an endpoint without
    `/prompts` — not perception-llm — is taken at its word: its 400s become errored cells). An
    endpoint that cannot be reached at all is one line, as in `simulate`: it was every cell
    errored after every retry, 7 s and a page of identical failures later."""
    request = urllib.request.Request(url.rstrip("/") + "/prompts")  # noqa: S310  (http(s) base)
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            listed = {item.get("name") for item in json.load(response).get("data", [])}
    except urllib.error.HTTPError:
        return  # it answered: whatever it is, the run asks it
    except urllib.error.URLError as error:  # refused, unknown host, connect timeout
        raise UsageError(f"cannot reach {url}: {error.reason}") from None
    except (OSError, ValueError, AttributeError):
        return
    for index, name in enumerate(names):
        if listed and name not in listed:
            known = ", ".join(sorted(str(n) for n in listed))
            raise UsageError(
                f"{where}: templates[{index}]: {url} has no template {name!r} (it has: {known})"
            )


def endpoint_model(url: str, api_key: str | None) -> str:
    """The endpoint's own response model when the suite names none (as `compare` does): the
    first it lists, preferring any over the offline `echo`."""

    model = asyncio.run(listed_by(url, api_key)) or "echo"
    print(f"model: {model} (the endpoint's; set `models` in the suite or --models to choose)")
    return model


def default_store(from_capture: int | None) -> str:
    """Replaying captured calls reads the file `serve --capture` writes in this folder when no
    database is named, as `calls` does (it looked in the eval file, which holds no calls);
    otherwise runs go to the eval file."""
    local_calls = Path(DEFAULT_CAPTURE_URL.removeprefix("sqlite:///"))
    return (
        DEFAULT_CAPTURE_URL if from_capture is not None and local_calls.is_file() else DEFAULT_URL
    )


def evaluate(args: argparse.Namespace) -> int:
    if args.suite is None and args.from_capture is None:
        raise UsageError("give a SUITE file (or a shipped name) or --from-capture N")
    for flag, value in (
        ("-j", args.concurrency),
        ("--max-calls", args.max_calls),
        ("--attempts", args.attempts),
        ("--from-capture", 1 if args.from_capture is None else args.from_capture),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    for flag, names in (("--templates", args.templates), ("--models", args.models)):
        # `--templates ' ,'` ran no cell at all and reported "passed (exit 0)"
        if names is not None and not [name for name in names.split(",") if name.strip()]:
            raise UsageError(f"{flag} needs at least one name, got {names!r}")
    if args.url is not None:
        endpoint_url_or_error(args.url)  # before the store: a refused command leaves no file
    settings = settings_or_error()
    with ExitStack() as stack:
        try:
            if args.suite is not None:
                path = suite_path(args.suite, stack)
                suite, base = read_suite(path), path.parent
            else:
                path, base = Path("--from-capture"), Path.cwd()
                suite = Suite(name="captured", templates=["default", "minimal"])
            if args.templates:
                names = [t.strip() for t in args.templates.split(",") if t.strip()]
                suite = suite.model_copy(update={"templates": names})
            # Opened once the suite reads: a suite that does not left a new database file behind.
            store = open_store(args.db or settings.capture or default_store(args.from_capture))
            stack.callback(store.store.dispose)
            cases = resolve_cases(
                suite, base, lambda conversation: captured_scenario(store.store, conversation)
            )
        except SuiteError as error:
            raise UsageError(
                str(error) if str(error).startswith(str(path)) else f"{path}: {error}"
            ) from None
        if args.from_capture is not None:
            cases += from_capture(store, args.from_capture, suite)
        if not cases:
            raise UsageError(f"{path}: tests: the suite has no tests")
        names = [Path(t).stem if t.endswith(".j2") else t for t in suite.templates]
        url, api_key, target = args.url, args.api_key, args.url
        cache_target = args.url
        if url is None:
            settings = template_dir(suite, base, settings, stack)
            check_templates(names, settings, str(path))
            # An outage must show as an errored cell, not as the spoken fallback line.
            settings = settings.model_copy(update={"fallback_text": ""})
            url = stack.enter_context(running_server(settings)) + "/v1"
            api_key = settings.api_key.get_secret_value() if settings.api_key else None
            # The cache must not hand back another upstream's reply under the same model name.
            target = "in-process"
            cache_target = f"in-process {settings.upstream_base_url} {settings.upstream_model}"
        elif any(t.endswith(".j2") for t in suite.templates):
            raise UsageError("template files need the in-process server (drop --url)")
        else:
            check_remote_templates(names, url, api_key, str(path))
        models = (
            [m.strip() for m in args.models.split(",") if m.strip()]
            if args.models
            else suite.models or [endpoint_model(url, api_key)]
        )
        if args.url is None and settings.upstream_base_url is None:
            # Without an upstream the offline responder answers whatever model is asked for: the
            # matrix would credit its replies to the model named (a CI gate green for nothing).
            stand_ins = [model for model in models if model != settings.echo_model]
            if stand_ins:
                raise UsageError(
                    f"{path}: models: no upstream is configured (PERCEPTION_LLM_UPSTREAM_BASE_URL),"
                    f" so the offline {settings.echo_model} would answer for "
                    f"{', '.join(stand_ins)}; configure the upstream, or --url an endpoint that "
                    "serves it"
                )
        options = RunOptions(
            url=url,
            target=cache_target,
            api_key=api_key,
            concurrency=args.concurrency,
            use_cache=not args.no_cache,
            max_calls=args.max_calls,
            retry=RetryPolicy(attempts=args.attempts),
        )
        runner = Runner(cases, names, models, suite.repeat, suite.judge, options, store)
        plan = runner.plan()
        print(
            f"suite {suite.name}: {len(cases)} test(s) x {len(names)} template(s) x {len(models)} "
            f"model(s) x {suite.repeat} sample(s) = {plan.cells} replies; at most "
            f"{plan.model_calls} model and {plan.judge_calls} judge calls before retries, "
            f"cap {args.max_calls} (--max-calls)"
        )
        if plan.model_calls + plan.judge_calls > args.max_calls:
            raise UsageError(f"the suite needs more calls than --max-calls {args.max_calls}")
        sys.stdout.flush()
        started, clock = time.time(), time.perf_counter()
        try:
            cells = asyncio.run(runner.run())
        except SuiteError as error:
            raise UsageError(str(error)) from None
        seconds = time.perf_counter() - clock
    summary = summarise(cells, names, suite.threshold)
    print("\n" + format_terminal(summary, suite.threshold))
    meta = {
        "suite": suite.name,
        "target": target,
        "seconds": seconds,
        "model_calls": runner.budget.model_calls,
        "judge_calls": runner.budget.judge_calls,
        "cache_hits": runner.cache_hits,
        "threshold": suite.threshold,
    }
    run_id = store.keep(summary, cells, {**meta, "started_at": started})
    write_reports(args, summary, meta)
    print(
        f"\nresult: {summary.status} (exit {summary.exit_code})"
        f"\ntook {seconds:.1f} s: {meta['model_calls']} model calls, {meta['judge_calls']} judge "
        f"calls, {meta['cache_hits']} cache hits; run #{run_id} kept in {store.store.url}"
    )
    return summary.exit_code
