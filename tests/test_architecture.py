"""The layering holds: each package imports only the ones below it, the app never imports the
emulator, and no module grows past what one concern needs.

    perception  (pure: stdlib + pydantic)
    prompts     → perception
    scenarios   → perception (Tavus' published texts), pydantic (Tavus encoding of scripted turns)
    server      → prompts, perception, scenarios (never emulator, except its CLI commands)
    emulator    → scenarios, server.inprocess (to start a local server for `compare`)
    evals       → emulator (its client), scenarios, prompts, perception, server (the store)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "perception": {"perception"},
    "prompts": {"prompts", "perception"},
    "scenarios": {"scenarios", "perception"},
    "server": {"server", "prompts", "perception", "scenarios"},
    "emulator": {"emulator", "scenarios", "server", "perception"},
    "evals": {"evals", "emulator", "scenarios", "server", "prompts", "perception"},
}
# The CLI's command modules may start the emulator: they are the user's entry point, not the app.
CLI_EXCEPTIONS = {
    "server/commands/emulate.py": {"emulator"},
    "server/commands/calls.py": {"emulator", "evals"},  # export as a scenario; A/B stats
    "server/commands/evaluate.py": {"evals"},  # `perception-llm eval`
}
MAX_LINES = 320


def modules() -> list[Path]:
    return [p for package in ALLOWED for p in sorted((ROOT / package).rglob("*.py"))]


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_only(path: Path) -> None:
    relative = str(path.relative_to(ROOT))
    package = relative.split("/")[0]
    allowed = ALLOWED[package] | CLI_EXCEPTIONS.get(relative, set())
    assert imported_packages(path) <= allowed, relative


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_running_app_does_not_import_the_emulator_or_the_openai_sdk() -> None:
    code = (
        "import sys, server.app; server.app.create_app(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('emulator', 'evals', 'openai')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"
