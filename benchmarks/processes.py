"""Starting the benchmark's processes (fake upstream, server) and reading their ready line."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(
    command: list[str],
    pattern: str,
    env: dict[str, str] | None = None,
    lines: list[str] | None = None,
    cwd: Path = ROOT,
) -> tuple[subprocess.Popen[str], str]:
    """Start `command` in `cwd` (the repository); return it and the first group of `pattern`
    once its output shows it. Its output keeps being read (into `lines` when given), or a full
    pipe would stall it."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(pattern, line)
        if match:
            threading.Thread(target=_drain, args=(process, lines), daemon=True).start()
            return process, match.group(1)
    raise RuntimeError(f"{command} did not start")


def _drain(process: subprocess.Popen[str], lines: list[str] | None) -> None:
    for line in process.stdout or ():
        if lines is not None:
            lines.append(line)
