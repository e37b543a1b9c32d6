"""`perception-llm calls stats --by template`: the arms of an A/B split compared on real calls.

Per arm: conversations, calls, TTFT p50/p95, reply tokens, the interrupted share (superseded or
abandoned: Tavus moved on before the reply ended), fallbacks and errors, emotion-tag repairs —
each with a 95 % interval from a bootstrap over *conversations* (a conversation's calls share a
user, a topic and a network: they are not independent samples, so resampling calls would make
the intervals too narrow). Our own tools' calls and Tavus' configuration check are left out.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from evals.captured import real_calls
from evals.stats import cluster_bootstrap, percentile
from prompts import estimate_tokens
from server.capture.schema import calls
from server.capture.store import CaptureStore

INTERRUPTED = ("cancelled", "superseded", "shutdown")
BROKEN = ("fallback", "failed")
ANSWERED = ("completed", "fallback")
# Calls recorded before replicas had names (schema v1) group as "unnamed".
GROUPABLE = {
    "template": calls.c.template,
    "model": calls.c.model,
    "replica": func.coalesce(calls.c.replica, "unnamed"),
}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _reply_tokens(reply: str) -> float:
    try:
        text = json.loads(reply).get("text") or ""
    except (ValueError, AttributeError):
        text = ""
    return float(estimate_tokens(text))


# metric name → (per-call value or None to skip the call, statistic over the values)
METRICS: dict[
    str, tuple[Callable[[dict[str, Any]], float | None], Callable[[list[float]], float | None]]
] = {
    "ttft_p50_ms": (lambda r: r["ttft_ms"], lambda v: percentile(v, 50)),
    "ttft_p95_ms": (lambda r: r["ttft_ms"], lambda v: percentile(v, 95)),
    "reply_tokens": (
        lambda r: _reply_tokens(r["reply"]) if r["outcome"] in ANSWERED else None,
        _mean,
    ),
    "interrupted": (lambda r: float(r["outcome"] in INTERRUPTED), _mean),
    "fallback_or_error": (lambda r: float(r["outcome"] in BROKEN), _mean),
    "emotion_repairs": (
        lambda r: None if r["emotion_repaired"] is None else float(r["emotion_repaired"]),
        _mean,
    ),
}


def arm_stats(store: CaptureStore, by: str, since: float | None) -> list[dict[str, Any]]:
    column = GROUPABLE[by]
    query = select(
        column.label("arm"),
        calls.c.conversation_id,
        calls.c.outcome,
        calls.c.ttft_ms,
        calls.c.reply,
        calls.c.emotion_repaired,
    ).where(real_calls() & (calls.c.template != "config-check"))
    if since is not None:
        query = query.where(calls.c.started_at >= since)
    arms: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    with store.engine.connect() as connection:
        for row in connection.execute(query):
            record = dict(row._mapping)
            arms[record["arm"]][record["conversation_id"]].append(record)
    results = []
    for arm in sorted(arms):
        conversations = list(arms[arm].values())
        result: dict[str, Any] = {
            by: arm,
            "conversations": len(conversations),
            "calls": sum(len(c) for c in conversations),
        }
        for name, (value_of, statistic) in METRICS.items():
            groups = [
                [v for v in (value_of(r) for r in group) if v is not None]
                for group in conversations
            ]
            pooled = [v for group in groups for v in group]
            result[name] = statistic(pooled)
            result[f"{name}_ci"] = cluster_bootstrap([g for g in groups if g], statistic)
        results.append(result)
    return results


def _shown(value: float | None, interval: tuple[float, float] | None, kind: str) -> str:
    if value is None:
        return "-"

    def one(x: float) -> str:
        return f"{x:.0%}" if kind == "share" else f"{x:.0f}"

    return one(value) + (f" [{one(interval[0])}-{one(interval[1])}]" if interval else "")


COLUMNS = (
    ("ttft_p50_ms", "ttft p50 ms", "number"),
    ("ttft_p95_ms", "ttft p95 ms", "number"),
    ("reply_tokens", "reply tok", "number"),
    ("interrupted", "interrupted", "share"),
    ("fallback_or_error", "fallback/error", "share"),
    ("emotion_repairs", "emotion repairs", "share"),
)


def format_arms(results: list[dict[str, Any]], by: str) -> str:
    header = [by, "conversations", "calls", *(label for _, label, _ in COLUMNS)]
    table = [header]
    for result in results:
        table.append(
            [
                str(result[by]),
                str(result["conversations"]),
                str(result["calls"]),
                *(_shown(result[n], result[f"{n}_ci"], k) for n, _, k in COLUMNS),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    lines.append(
        "[low-high]: 95% interval by bootstrap over conversations; "
        "our tools' calls and Tavus' configuration check are left out"
    )
    return "\n".join(lines)
