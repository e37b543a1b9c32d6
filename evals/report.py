"""What a run found, in forms a person can act on: the matrix (test x template x model x
assertion → pass rate with its 95 % Wilson interval, judge score, TTFT p50, tokens), each
template against the threshold, the winner per assertion where the intervals do not overlap,
and the failing replies with their reasons. The same rows feed the terminal, `--json`, `--html`
and the store (the playground's Experiments section)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from evals.runner import Cell
from evals.stats import percentile, separated, wilson


@dataclass(frozen=True)
class Summary:
    rows: list[dict[str, Any]]
    templates: list[dict[str, Any]]
    winners: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    errored_cells: int
    status: str  # passed, failed (a template under the threshold), incomplete (errored cells)

    @property
    def exit_code(self) -> int:
        return {"passed": 0, "failed": 1, "incomplete": 2}[self.status]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "errored_cells": self.errored_cells,
            "templates": self.templates,
            "winners": self.winners,
            "rows": self.rows,
            "failures": self.failures,
        }


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(cells: list[Cell], templates: list[str], threshold: float) -> Summary:
    groups: dict[tuple[str, str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.case.name, cell.template, cell.model)].append(cell)
    rows: list[dict[str, Any]] = []
    for (test, template, model), members in groups.items():
        ttfts = [c.ttft_ms for c in members if c.ttft_ms is not None]
        answered = [c for c in members if c.error is None]
        for position, spec in enumerate(members[0].case.assertions):
            verdicts = [c.verdicts[position][1] for c in members]
            passed = sum(1 for v in verdicts if v.passed)
            failed = sum(1 for v in verdicts if v.passed is False)
            low, high = wilson(passed, passed + failed)
            scores = [v.score for v in verdicts if v.score is not None]
            rows.append(
                {
                    "test": test,
                    "template": template,
                    "model": model,
                    "assertion": spec.type,
                    "label": spec.label,
                    "passed": passed,
                    "failed": failed,
                    "errored": len(verdicts) - passed - failed,
                    "total": passed + failed,
                    "pass_rate": _rounded(passed / (passed + failed) if passed + failed else None),
                    "ci_low": _rounded(low),
                    "ci_high": _rounded(high),
                    "score_mean": _rounded(_mean(scores)),
                    "ttft_p50_ms": _rounded(percentile(ttfts, 50), 1),
                    "ttft_cached": any(c.cached for c in members),
                    "prompt_tokens": _rounded(
                        _mean([c.prompt_tokens for c in answered if c.prompt_tokens is not None]), 1
                    ),
                    "reply_tokens": _rounded(_mean([float(c.reply_tokens) for c in answered]), 1),
                }
            )
    per_template: list[dict[str, Any]] = []
    for template in templates:
        mine = [r for r in rows if r["template"] == template]
        passed, total = sum(r["passed"] for r in mine), sum(r["total"] for r in mine)
        low, high = wilson(passed, total)
        rate = passed / total if total else None
        per_template.append(
            {
                "template": template,
                "passed": passed,
                "total": total,
                "pass_rate": _rounded(rate),
                "ci_low": _rounded(low),
                "ci_high": _rounded(high),
                # nothing asserted (a suite that only collects replies): nothing to gate
                "meets_threshold": bool(rate is None or rate >= threshold),
            }
        )
    errored = sum(1 for cell in cells if cell.errored)
    status = (
        "incomplete"
        if errored
        else "passed"
        if all(bool(t["meets_threshold"]) for t in per_template)
        else "failed"
    )
    return Summary(rows, per_template, winners(rows, templates), failures(cells), errored, status)


def winners(rows: list[dict[str, Any]], templates: list[str]) -> list[dict[str, Any]]:
    """Per assertion (over tests and models): the template whose interval lies above every
    other's, or none when they overlap (the data cannot tell them apart yet)."""
    found = []
    for label in dict.fromkeys(r["label"] for r in rows):
        intervals = {}
        for template in templates:
            mine = [r for r in rows if r["label"] == label and r["template"] == template]
            passed, total = sum(r["passed"] for r in mine), sum(r["total"] for r in mine)
            intervals[template] = (passed, total, wilson(passed, total))
        best = max(intervals, key=lambda t: intervals[t][2][0])
        clear = len(templates) > 1 and all(
            separated(intervals[best][2], intervals[t][2]) for t in templates if t != best
        )
        found.append(
            {
                "assertion": label,
                "winner": best if clear else None,
                "rates": {t: f"{p}/{n}" for t, (p, n, _) in intervals.items()},
            }
        )
    return found


def failures(cells: list[Cell]) -> list[dict[str, Any]]:
    found = []
    for cell in cells:
        for spec, verdict in cell.verdicts:
            if verdict.passed:
                continue
            found.append(
                {
                    "test": cell.case.name,
                    "template": cell.template,
                    "model": cell.model,
                    "sample": cell.sample + 1,
                    "assertion": spec.label,
                    "errored": verdict.errored,
                    "reason": verdict.reason,
                    "reply": cell.reply,
                    "judge_raw": verdict.raw,
                }
            )
    return found
