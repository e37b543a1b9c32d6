"""The conformance report of `simulate`: which checks an endpoint passed, and which of them Tavus
relies on."""

from __future__ import annotations

import re
from typing import Any

from emulator.stream import StreamResult
from scenarios import Scenario

# What each check means, and whether Tavus relies on it (a broken required check fails the run,
# exit 1; an advisory one is reported, exit 0). Tavus never sends an invalid request, so how an
# endpoint answers one is advisory.
CHECKS = {
    "http_status": ("requests answered 200", True),
    "content_type": ("Content-Type: text/event-stream", True),
    "sse_framing": ("one `data:` line per event, no id:/event:/retry: fields", True),
    "chunk_json": ("every chunk is a chat.completion.chunk JSON object", True),
    "done_terminator": ("the stream ends with data: [DONE]", True),
    "role_first": ("the first delta carries role: assistant", True),
    "single_finish_reason": ("exactly one finish_reason", True),
    "constant_id": ("one id/created/model per stream", True),
    "tool_call_deltas": ("tool-call deltas carry index, id, type, function name", True),
    "stream_error": ("no error events", True),
    "config_check": ("Tavus' configuration check gets a streamed answer", True),
    "emotion_tag": (
        'each reply begins with one well-formed <emotion value="…"/> (Phoenix-4)',
        True,
    ),
    "identical_retry": ("an identical retry in flight gets the whole reply", True),
    "abandoned_request": ("an abandoned stream leaves the endpoint serving", True),
    "error_body": ("a bad request gets an OpenAI error body", False),
}
WELL_FORMED_TAG = re.compile(r'<emotion value="[a-z][a-z_-]{0,31}"/>')


def emotion_problems(scenario: Scenario, replies: list[StreamResult]) -> list[str]:
    """With a Phoenix-4 scenario, every spoken reply must start with a well-formed tag."""
    if not scenario.phoenix4:
        return []
    return [
        f"reply starts {reply.text[:40]!r}"
        for reply in replies
        if reply.text and not reply.tool_calls and not WELL_FORMED_TAG.match(reply.text)
    ]


def conformance(found: dict[str, list[str]], exercised: dict[str, bool]) -> dict[str, Any]:
    """Checks with a status (ok, fail, not exercised); `ok` is false only when a required one
    failed."""
    checks = []
    for name, problems in found.items():
        description, required = CHECKS.get(name, (name, True))
        status = "fail" if problems else "ok" if exercised.get(name, True) else "not exercised"
        checks.append(
            {
                "name": name,
                "description": description,
                "required": required,
                "status": status,
                "ok": not problems,
                "problems": sorted(set(problems))[:5],
            }
        )
    return {"checks": checks, "ok": all(check["ok"] for check in checks if check["required"])}


MARKS = {"ok": "ok  ", "not exercised": "--  ", "fail": "FAIL"}


def format_report(report: dict[str, Any]) -> str:
    lines = [f"\nconformance of {report['url']} ({report['requests']} requests):"]
    for check in report["checks"]:
        mark = MARKS[check["status"]] if check["required"] or check["ok"] else "warn"
        note = "" if check["required"] else " (advisory: Tavus does not rely on it)"
        suffix = " (not exercised)" if check["status"] == "not exercised" else note
        lines.append(f"  {mark} {check['description']}{suffix}")
        lines.extend(f"       - {problem}" for problem in check["problems"])
    if report.get("upstream_calls_saved") is not None:
        lines.append(
            f"upstream calls saved by sharing identical requests: "
            f"{report['upstream_calls_saved']:.0f}"
        )
    for reason in report.get("fallbacks") or ():
        lines.append(
            f"fallback: {reason} — replies were the endpoint's fallback line, not its model's"
        )
    lines.append(
        "result: "
        + (
            "the endpoint meets the contract Tavus relies on"
            if report["ok"]
            else "the endpoint breaks the contract Tavus relies on"
        )
    )
    return "\n".join(lines)
