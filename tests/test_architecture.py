"""The layering holds: each package imports only the ones below it, each of `server/`'s
subpackages imports only the parts of `server/` its concern needs, the app never imports the
emulator, and every module says what it is for.

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

# Inside `server/`: which parts each part may import (issue 24 replaced a 320-line module cap,
# which shaped modules by size, with these rules, which shape them by concern). A part is a
# subpackage or a top-level module. Read as "may depend on"; an edge listed here that points up
# the stack carries a comment saying why.
SERVER_ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "redaction": set(),
    "samples": set(),
    "replica_settings": set(),
    "wire": {"responders"},  # responders: close_events, to stop the upstream read
    "metrics": {"completion"},  # the outcome labels are the completion's one list
    "capture": {"metrics", "redaction"},
    # The Settings class is assembled from each concern's own section (capture, connection
    # shares, emotion values, reply size, the A/B split).
    "experiment_settings": {"capture", "completion"},
    "settings": {"completion", "http", "experiment_settings", "replica_settings"},
    "responders": {"completion", "upstream", "wire"},
    "upstream": {"completion", "responders", "wire", "errors", "redaction", "settings"},
    # http: the preparation's body decoder and limits, the owner's disconnect watch and log
    # context; services: the owner's slot and registries (typed only in the preparation).
    "completion": {
        "capture",
        "errors",
        "http",
        "metrics",
        "responders",
        "services",
        "settings",
        "wire",
    },
    "http": {"completion", "errors", "metrics", "services", "settings", "wire"},
    "services": {"capture", "completion", "http", "metrics", "redaction", "responders", "settings"},
    "routes": {
        "capture",
        "completion",
        "errors",
        "http",
        "responders",
        "samples",
        "services",
        "settings",
        "wire",
    },
    "app": {
        "capture",
        "completion",
        "errors",
        "http",
        "metrics",
        "redaction",
        "responders",
        "routes",
        "services",
        "settings",
        "upstream",
    },
    "inprocess": {"app", "http", "settings"},
    # completion, errors: `render` and `parse` call the one preparation and map its 400s to
    # usage errors (issue 24: the CLI had its own copy, with another precedence).
    "commands": {"capture", "completion", "errors", "http", "inprocess", "settings"},
    "cli": {"commands"},
}


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


def server_part(module: str) -> str | None:
    """`server.capture.store` -> `capture`; `server.app` -> `app`; anything else -> None."""
    parts = module.split(".")
    if parts[0] != "server" or len(parts) < 2:
        return None
    return parts[1]


def server_parts_imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {part for name in names if (part := server_part(name)) is not None}


SERVER_MODULES = sorted((ROOT / "server").rglob("*.py"))


@pytest.mark.parametrize("path", SERVER_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_server_parts_import_only_what_their_concern_needs(path: Path) -> None:
    relative = path.relative_to(ROOT / "server")
    if relative.parts == ("__init__.py",):
        return
    part = relative.parts[0].removesuffix(".py")
    imported = server_parts_imported(path) - {part}
    assert part in SERVER_ALLOWED, f"server/{relative}: a new part needs its rule here"
    assert imported <= SERVER_ALLOWED[part], (
        f"server/{relative} imports {sorted(imported - SERVER_ALLOWED[part])}"
    )


def test_every_server_part_has_a_rule_and_every_rule_a_part() -> None:
    parts = {p.name.removesuffix(".py") for p in (ROOT / "server").iterdir()}
    parts = {p for p in parts if not p.startswith("__") and p not in {"playground", "py.typed"}}
    assert set(SERVER_ALLOWED) == parts


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_says_what_it_is_for(path: Path) -> None:
    text = path.read_text()
    assert not text.strip() or ast.get_docstring(ast.parse(text)), "a module docstring"


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


# Issue 24: the HTTP `Request` travelled into the worker thread so prompting could read a
# header. The preparation takes plain values; the edge (routes, the completion owner) resolves
# headers and query into a `TemplateChoice`.
FRAMEWORK_FREE = ("server/completion/preparation.py", "server/completion/prompting.py")


@pytest.mark.parametrize("relative", FRAMEWORK_FREE)
def test_the_preparation_imports_no_web_framework(relative: str) -> None:
    tree = ast.parse((ROOT / relative).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert not roots & {"fastapi", "starlette"}, relative
