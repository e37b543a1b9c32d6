"""The README is tested (issue 21): every fenced block runs as a newcomer would run it, and what
it prints is checked where the README shows it (conventions in tests/readme_blocks.py and the
README's Development section).

How: the repository's files are copied to a temporary folder, and the README's first block — the
install-and-serve command — runs there as written: a fresh venv, `pip install -e .` (no test
extras, the README's install), and `perception-llm serve`, which stays up as the server every
later block talks to (`127.0.0.1:8000` in a block is that server's real port). Every `sh`
command then runs in that folder with bash, with no `PERCEPTION_LLM_*` variables and no venv on
PATH, and must exit 0; another `serve` runs until it answers `/healthz`, then gets SIGTERM and
must exit 0. `python` blocks run with that venv's Python, `json` blocks must parse (a scenario
must load), `yaml` blocks must load as an eval suite, a `jinja` block is loaded as a template and renders a sample.

Why not `pytest-examples` or `mktestdocs`: both run Python (mktestdocs also bash) blocks in
isolation; neither checks a shell command's output, starts the server a block talks to, marks
blocks that cannot run here, or runs the README's own install first — so a small runner.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from evals.suite import Suite
from scenarios.model import Scenario
from tests.readme_blocks import Block, commands, matches, normalise, read_blocks

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = read_blocks((ROOT / "README.md").read_text())
RUN = [block for block in BLOCKS if not block.is_output and block.language != "text"]

# Every block the suite cannot run, by its first line: a new one must be added here on purpose.
NOT_RUN = {
    "# 2. install and run the whole test suite (pytest, plus ruff and mypy as tests)",
    "# OpenAI",
    "PERCEPTION_LLM_CAPTURE=postgresql://user:pass@db/calls .venv/bin/perception-llm serve  # replicas",
    ".venv/bin/perception-llm simulate --url https://your-llm.example.com/v1 --api-key KEY \\",
    ".venv/bin/python benchmarks/capture_outage.py URL   # the capture database stopped mid-run",
    ".venv/bin/perception-llm eval --from-capture 20 --templates default,minimal --html report.html",
    ".venv/bin/perception-llm calls stats --by template --since 7d",
}
README_PORT = "127.0.0.1:8000"
COMMAND_TIMEOUT = 300


@dataclass
class Checkout:
    """The repository copy the README runs in, and the server its first block started."""

    folder: Path
    port: int
    env: dict[str, str]
    server: subprocess.Popen[bytes] | None = None

    def command(self, text: str) -> str:
        return text.replace(README_PORT, f"127.0.0.1:{self.port}")


def newcomer_env() -> dict[str, str]:
    """The environment of someone who just cloned: no settings, no activated venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERCEPTION_LLM_", "VIRTUAL"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if "/.venv/" not in p + "/"]
    env["PATH"] = os.pathsep.join(path)
    env.pop("PYTHONPATH", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def healthy(port: int, process: subprocess.Popen[bytes], deadline: float = 120) -> None:
    """Until the server answers /healthz (or fails): a condition polled, not a fixed sleep."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no /healthz answer on port {port} in {deadline:g} s")


def copy_repository(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


LISTENING = re.compile(rb"Uvicorn running on http://[^:\s]+:(\d+)")


def listening_port(process: subprocess.Popen[bytes], log: Path, deadline: float) -> int:
    """The port a server started with port 0 says it listens on (polled from its log)."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        found = LISTENING.search(log.read_bytes())
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            raise AssertionError(f"the server exited with status {process.returncode}")
        time.sleep(0.05)
    raise AssertionError(f"the server did not start listening in {deadline:g} s")


def start_serve(checkout: Checkout, command: str) -> tuple[subprocess.Popen[bytes], int]:
    """A `serve` command in the background, once it answers /healthz; and its port. The
    README's `--port 8000` (or the default port) becomes port 0: the kernel picks a free one, so
    nothing can take it while the install runs."""
    command = re.sub(r"--port \d+", "--port 0", checkout.command(command))
    # The server replaces the shell (`exec`), so SIGTERM and the exit status are its own.
    before, joint, last = command.rpartition("&& ")
    command = before + joint + re.sub(r"^((?:\w+=\S+\s+)*)", r"\1exec ", last)
    log = checkout.folder.parent / f"serve-{time.monotonic_ns()}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=checkout.folder,
            env={**checkout.env, "PERCEPTION_LLM_PORT": "0"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # SIGTERM reaches the server and its workers
        )
    try:
        port = listening_port(process, log, deadline=600 if "pip install" in command else 120)
        healthy(port, process)
    except AssertionError as error:
        raise AssertionError(f"{command}: {error}\n{log.read_text()[-3000:]}") from None
    return process, port


def stop(process: subprocess.Popen[bytes]) -> int:
    os.killpg(process.pid, signal.SIGTERM)
    return process.wait(timeout=60)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checkout]:
    """The README's first block, run as written in a fresh copy: install, then serve."""
    first = RUN[0]
    (install,) = commands(first.text)
    assert "pip install -e ." in install and "perception-llm serve" in install, first.title
    folder = tmp_path_factory.mktemp("readme") / "perception-llm"
    folder.mkdir()
    copy_repository(folder)
    checkout = Checkout(folder, 0, newcomer_env())
    checkout.server, checkout.port = start_serve(checkout, install)
    try:
        yield checkout
    finally:
        assert stop(checkout.server) == 0


def run_command(checkout: Checkout, command: str) -> str:
    """Run one command of a `sh` block; its stdout."""
    if "perception-llm serve" in command:
        assert stop(start_serve(checkout, command)[0]) == 0, command
        return ""
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", checkout.command(command)],
        cwd=checkout.folder,
        env=checkout.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert result.returncode == 0, f"{command}\nexit {result.returncode}\n{result.stderr[-3000:]}"
    return result.stdout


def check_output(block: Block, printed: str, port: int) -> None:
    if block.output is None:
        return
    expected, actual = normalise(block.output), normalise(printed, port)
    if os.environ.get("README_SHOW_OUTPUT"):  # for writing a block's output: the real text
        print(f"\n--- {block.title}\n{actual}\n---")
    assert matches(expected, actual), (
        f"{block.title}: the README shows\n{expected}\nbut it printed\n{actual}"
    )


@pytest.mark.parametrize("block", [b for b in RUN if not b.not_run], ids=lambda b: b.title)
def test_readme_block(block: Block, checkout: Checkout, tmp_path: Path) -> None:
    if block is RUN[0]:  # the fixture ran it: the server it started answers
        healthy(checkout.port, checkout.server)  # type: ignore[arg-type]
        return
    if block.language == "sh":
        printed = "".join(run_command(checkout, command) for command in commands(block.text))
        check_output(block, printed, checkout.port)
    elif block.language == "python":
        script = tmp_path / "block.py"
        script.write_text(checkout.command(block.text))
        result = subprocess.run(
            [str(checkout.folder / ".venv" / "bin" / "python"), str(script)],
            cwd=checkout.folder,
            env=checkout.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        check_output(block, result.stdout, checkout.port)
    elif block.language == "json":
        data = json.loads(block.text)
        if "turns" in data:  # a scenario: it must load as one
            Scenario.model_validate(data)
    elif block.language == "yaml":
        data = yaml.safe_load(block.text)
        # An eval suite, or the part of one a block shows, must load as one.
        Suite.model_validate({"templates": ["default"], "tests": ["raven-cooking"], **data})
    elif block.language == "jinja":
        (tmp_path / "example.j2").write_text(block.text)
        run_command(
            checkout,
            f"PERCEPTION_LLM_PROMPTS_DIR={tmp_path} .venv/bin/perception-llm render "
            "server/samples/raven0-documented.json --prompt example",
        )


def test_the_blocks_that_do_not_run_are_these() -> None:
    marked = {block.text.splitlines()[0] for block in RUN if block.not_run}
    assert marked == NOT_RUN


def test_commands_name_the_venv_they_run_with() -> None:
    # A bare `perception-llm` is "command not found" without an activated venv (issue 21).
    for block in BLOCKS:
        if block.language == "sh":
            for command in commands(block.text):
                assert not re.match(r"(\w+=\S+ )*perception-llm ", command), command


def test_runnable_blocks_are_all_run() -> None:
    assert RUN[0].language == "sh" and not RUN[0].not_run
    assert sum(1 for block in RUN if not block.not_run) >= 15
