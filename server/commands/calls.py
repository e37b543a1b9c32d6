"""`perception-llm calls`: read the capture database; a captured call as a test or experiment."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from server.capture.settings import DEFAULT_CAPTURE_URL
from server.capture.store import CaptureStore, CaptureStoreError
from server.commands.common import UsageError, settings_or_error


def capture_url(given: str | None) -> str:
    """--db, else PERCEPTION_LLM_CAPTURE, else the file `serve --capture` writes in this folder."""
    url = given or settings_or_error().capture
    if url:
        return url
    if Path(DEFAULT_CAPTURE_FILE).is_file():
        return DEFAULT_CAPTURE_URL
    raise UsageError(
        f"no capture database: no {DEFAULT_CAPTURE_FILE} here (`serve --capture` writes it in "
        "its working folder); set PERCEPTION_LLM_CAPTURE or pass --db URL"
    )


def open_store(given: str | None) -> CaptureStore:
    url = capture_url(given)
    try:
        store = CaptureStore(url)
        store.upgrade()
    except CaptureStoreError as error:
        raise UsageError(str(error)) from None
    return store


DEFAULT_CAPTURE_FILE = DEFAULT_CAPTURE_URL.removeprefix("sqlite:///")


def when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def latest_call(store: CaptureStore, conversation: str | None) -> dict[str, Any]:
    rows = store.calls_of(conversation)
    if not rows:
        raise UsageError(f"no captured calls for conversation {conversation!r}")
    answered = [row for row in rows if row["outcome"] in ("completed", "fallback")] or rows
    full = store.call(answered[-1]["id"])
    assert full is not None
    return full


def calls(args: argparse.Namespace) -> int:
    if args.limit < 1:  # SQLite read -1 as "no limit", PostgreSQL refused it with a traceback
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    store = open_store(args.db)
    try:
        return ACTIONS[args.action](store, args)
    except CaptureStoreError as error:  # the database failed a read: one line, as at opening
        raise UsageError(str(error)) from None
    except SQLAlchemyError as error:  # a delete or the stats query, which the store leaves raw
        raise UsageError(f"capture database {store.url}: {type(error).__name__}") from None
    finally:
        store.dispose()


def list_calls(store: CaptureStore, args: argparse.Namespace) -> int:
    if args.target is None:
        for row in store.conversations(args.limit):
            print(
                f"{when(row['last_at'])}  {row['conversation_id'] or '-':40}  "
                f"{row['calls']:4d} calls  {row['issues'] or 0} issues  "
                f"{row['replicas']} replica{'' if row['replicas'] == 1 else 's'}"
            )
        return 0
    for row in store.calls_of(args.target, args.limit):
        ttft = "-" if row["ttft_ms"] is None else f"{row['ttft_ms']:.0f} ms"
        flags = " ".join(
            flag
            for flag in (
                f"unknown tags: {row['unknown_tags']}" if row["unknown_tags"] else "",
                f"{row['issues']} issues" if row["issues"] else "",
                "shared" if row["shared"] else "",
            )
            if flag
        )
        print(
            f"#{row['id']:<6} {when(row['started_at'])}  {row['replica'] or '-':16} "
            f"{row['outcome']:10} ttft {ttft:>7}  "
            f"{row['template']:12} {row['prompt_tokens']:5d} tok  {row['user_text'][:60]!r} {flags}"
        )
    return 0


def show_call(store: CaptureStore, args: argparse.Namespace) -> int:
    target = (args.target or "").strip().removeprefix("#")  # as `calls list` prints it
    if not (target.isascii() and target.isdigit()):
        raise UsageError("show takes a call id (a number from `calls list CONVERSATION`, e.g. 12)")
    row = store.call(int(target))
    if row is None:
        raise UsageError(f"no captured call {args.target}")
    for name in ("headers", "request", "parsed", "prompt", "reply"):
        row[name] = json.loads(row[name])
    print(json.dumps(row, indent=2, ensure_ascii=False))
    return 0


def export_call(store: CaptureStore, args: argparse.Namespace) -> int:
    from emulator.from_capture import fixture_from_call, scenario_from_call

    row = latest_call(store, args.target)
    exported = scenario_from_call(row) if args.form == "scenario" else fixture_from_call(row)
    text = json.dumps(exported, indent=2, ensure_ascii=False) + "\n"
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot write {args.out}: {error.strerror}") from None
        print(f"{args.form} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def replay_call(store: CaptureStore, args: argparse.Namespace) -> int:
    import tempfile

    from emulator.from_capture import scenario_from_call
    from server.commands.emulate import run_compare

    scenario = scenario_from_call(latest_call(store, args.target))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(scenario, handle)
    compare_args = argparse.Namespace(
        scenarios=[handle.name],
        prompts=args.prompts,
        url=args.url,
        api_key=args.api_key,
        model=args.model,
        out=args.out,
    )
    try:
        return run_compare(compare_args)
    finally:
        Path(handle.name).unlink(missing_ok=True)


def since_seconds(text: str | None) -> float | None:
    """`--since 7d` / `24h` / `30m`, or a date `2026-12-01`: the unix time it names."""
    if text is None:
        return None
    units = {"d": 86400, "h": 3600, "m": 60}
    if text[-1:] in units and text[:-1].isdigit():
        return time.time() - int(text[:-1]) * units[text[-1]]
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since takes 7d, 24h, 30m or a date, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def stats_calls(store: CaptureStore, args: argparse.Namespace) -> int:
    from evals.arms import arm_stats, format_arms

    results = arm_stats(store, args.by, since_seconds(args.since))
    if not results:
        print("no real calls captured" + (f" since {args.since}" if args.since else ""))
        return 0
    print(json.dumps(results, indent=2) if args.json else format_arms(results, args.by))
    return 0


def delete_calls(store: CaptureStore, args: argparse.Namespace) -> int:
    """Forget a conversation (someone asked to be removed), or every call older than a number
    of days."""
    if args.older_than is not None:
        if args.target is not None:
            raise UsageError("delete takes a conversation id or --older-than DAYS, not both")
        if not math.isfinite(args.older_than) or args.older_than < 0:
            # A negative age puts the cut-off in the future: it deleted every call.
            raise UsageError(f"--older-than takes days, 0 or more, got {args.older_than:g}")
        removed = store.delete_older_than(args.older_than * 86400)
        print(f"deleted {removed} calls older than {args.older_than:g} days")
        return 0
    if args.target is None:
        raise UsageError("delete takes a conversation id, or --older-than DAYS")
    removed = store.delete_conversation(args.target)
    if not removed:
        raise UsageError(f"no captured calls for conversation {args.target!r}")
    print(f"deleted {removed} calls of conversation {args.target}")
    return 0


ACTIONS = {
    "list": list_calls,
    "show": show_call,
    "export": export_call,
    "replay": replay_call,
    "stats": stats_calls,
    "delete": delete_calls,
}
