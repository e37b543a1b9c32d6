"""A run's summary on the terminal and as one self-contained HTML page (no scripts, no links
out: it can be attached to a CI run or a pull request as is)."""

from __future__ import annotations

import html
from typing import Any

from evals.report import Summary

COLUMNS = ("test", "template", "model", "assertion", "pass", "95% CI", "score", "ttft p50",
           "prompt tok", "reply tok")  # fmt: skip
REPLY_SHOWN = 240


def _cells(row: dict[str, Any]) -> list[str]:
    ttft = row["ttft_p50_ms"]
    shown_ttft = "-" if ttft is None else f"{ttft:.0f} ms" + ("*" if row["ttft_cached"] else "")
    return [
        row["test"],
        row["template"],
        row["model"],
        row["label"],
        f"{row['passed']}/{row['total']}" + (f" +{row['errored']} err" if row["errored"] else ""),
        f"{row['ci_low']:.2f}-{row['ci_high']:.2f}",
        "-" if row["score_mean"] is None else f"{row['score_mean']:.2f}",
        shown_ttft,
        "-" if row["prompt_tokens"] is None else f"{row['prompt_tokens']:.0f}",
        "-" if row["reply_tokens"] is None else f"{row['reply_tokens']:.0f}",
    ]


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= REPLY_SHOWN else flat[: REPLY_SHOWN - 1] + "…"


def format_terminal(summary: Summary, threshold: float) -> str:
    table = [list(COLUMNS), *(_cells(row) for row in summary.rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in table]  # fmt: skip
    if any(row["ttft_cached"] for row in summary.rows):
        lines.append("* includes latencies recorded when the reply was cached")
    lines.append(f"\ntemplates (threshold {threshold:.0%}):")
    for t in summary.templates:
        if t["pass_rate"] is None:
            lines.append(f"  {t['template']:<14} no assertions to count")
            continue
        rate = f"{t['pass_rate']:.0%}"
        verdict = "ok" if t["meets_threshold"] else "UNDER THRESHOLD"
        lines.append(
            f"  {t['template']:<14} {t['passed']}/{t['total']} passed ({rate}, "
            f"95% CI {t['ci_low']:.2f}-{t['ci_high']:.2f})  {verdict}"
        )
    lines.append("\nwinner per assertion (95% intervals apart):")
    for w in summary.winners:
        rates = ", ".join(f"{t} {r}" for t, r in w["rates"].items())
        lines.append(f"  {w['assertion']:<30} {w['winner'] or 'none yet'}  ({rates})")
    if summary.failures:
        lines.append(f"\nfailures ({len(summary.failures)}):")
        for f in summary.failures:
            kind = "ERRORED" if f["errored"] else "failed"
            lines.append(
                f"  {f['test']} · {f['template']} · {f['model']} #{f['sample']}: "
                f"{f['assertion']} {kind}: {f['reason']}"
            )
            if f["reply"]:
                lines.append(f"    reply: {_short(f['reply'])}")
            if f["judge_raw"] is not None:
                lines.append(f"    judge said: {_short(f['judge_raw'])}")
    return "\n".join(lines)


STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
    ".fail{background:#fde8e8}.pass{background:#e8f6e8}.err{background:#fff4d6}"
    "pre{white-space:pre-wrap;max-width:60em}"
)


def format_html(summary: Summary, meta: dict[str, Any]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = []
    for row in summary.rows:
        state = "err" if row["errored"] else "pass" if row["failed"] == 0 else "fail"
        body.append(
            f'<tr class="{state}">' + "".join(f"<td>{e(c)}</td>" for c in _cells(row)) + "</tr>"
        )
    templates = "".join(
        f"<li>{e(t['template'])}: {t['passed']}/{t['total']} "
        f"({'ok' if t['meets_threshold'] else 'under the threshold'})</li>"
        for t in summary.templates
    )
    winners = "".join(
        f"<li>{e(w['assertion'])}: {e(w['winner'] or 'none yet')}</li>" for w in summary.winners
    )
    failed = "".join(
        f"<li><b>{e(f['test'])} · {e(f['template'])} · {e(f['model'])} #{f['sample']}</b> "
        f"{e(f['assertion'])}: {e(f['reason'])}<pre>{e(f['reply'])}</pre>"
        + (f"<pre>judge: {e(f['judge_raw'])}</pre>" if f["judge_raw"] is not None else "")
        + "</li>"
        for f in summary.failures
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>eval {e(meta['suite'])}</title>"
        f"<style>{STYLE}</style></head><body><h1>Suite {e(meta['suite'])}: "
        f"{e(summary.status)}</h1><p>{e(meta['target'])} · {meta['seconds']:.1f} s · "
        f"{meta['model_calls']} model calls, {meta['judge_calls']} judge calls, "
        f"{meta['cache_hits']} from the cache</p><table><tr>{head}</tr>{''.join(body)}</table>"
        f"<h2>Templates</h2><ul>{templates}</ul><h2>Winner per assertion</h2><ul>{winners}</ul>"
        f"<h2>Failures</h2><ol>{failed or '<li>none</li>'}</ol></body></html>\n"
    )
