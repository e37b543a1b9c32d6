"""`perception-llm calls`: read the capture database; a captured call as a test or experiment."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from server.capture_store import CaptureStore, CaptureStoreError
from server.commands.common import UsageError, settings_or_error


def open_store(url: str | None) -> CaptureStore:
    url = url or settings_or_error().capture
    if not url:
        raise UsageError("no capture database: set PERCEPTION_LLM_CAPTURE or pass --db URL")
    try:
        store = CaptureStore(url)
        store.upgrade()
    except CaptureStoreError as error:
        raise UsageError(str(error)) from None
    return store


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
    store = open_store(args.db)
    try:
        return ACTIONS[args.action](store, args)
    finally:
        store.dispose()


def list_calls(store: CaptureStore, args: argparse.Namespace) -> int:
    if args.target is None:
        for row in store.conversations(args.limit):
            print(
                f"{when(row['last_at'])}  {row['conversation_id'] or '-':40}  "
                f"{row['calls']:4d} calls  {row['issues'] or 0} issues"
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
            f"#{row['id']:<6} {when(row['started_at'])}  {row['outcome']:10} ttft {ttft:>7}  "
            f"{row['template']:12} {row['prompt_tokens']:5d} tok  {row['user_text'][:60]!r} {flags}"
        )
    return 0


def show_call(store: CaptureStore, args: argparse.Namespace) -> int:
    if not (args.target or "").isdigit():
        raise UsageError("show takes a call id (a number from `calls list CONVERSATION`)")
    row = store.call(int(args.target))
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


def delete_calls(store: CaptureStore, args: argparse.Namespace) -> int:
    """Forget a conversation (someone asked to be removed), or every call older than a number
    of days."""
    if args.older_than is not None:
        if args.target is not None:
            raise UsageError("delete takes a conversation id or --older-than DAYS, not both")
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
    "delete": delete_calls,
}
