"""A real (non-editable) install works: an editable install hides files left out of the build,
the Docker image would not. The wheel is built from a clean copy, installed into a fresh venv,
and its own `perception-llm` serves, simulates the default scenario and lists the examples."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "perception", "prompts", "scenarios", "emulator")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a clean copy: setuptools reuses a stale build/ directory, which hid a bug once.
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = tmp.glob("perception_llm-*.whl")
    return built


def test_wheel_contains_every_file_of_every_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected - names == set()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; its dependencies come from this test run's
    environment through a .pth file (no network), its own code only from the wheel."""
    venv = tmp_path_factory.mktemp("venv") / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv


@pytest.fixture(scope="module")
def installed_server(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cwd = tmp_path_factory.mktemp("elsewhere")  # nowhere near the repository
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPTION_LLM_")}
    process = subprocess.Popen(
        [str(installed / "bin" / "perception-llm"), "serve", "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    port = None
    for line in process.stdout:
        match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
        if match:
            port = match.group(1)
            break
    assert port, "the installed server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_installed_copy_is_the_one_running(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import server, scenarios; print(server.__file__)",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert str(installed) in where and str(ROOT) not in where


def test_installed_simulate_runs_the_default_scenario(
    installed: Path, installed_server: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(installed / "bin" / "perception-llm"), "simulate", "--url", installed_server + "/v1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shipped: none" not in result.stdout + result.stderr


def test_installed_playground_lists_examples_and_serves_its_scripts(installed_server: str) -> None:
    examples = httpx.get(installed_server + "/v1/playground/examples", timeout=10).json()
    assert {s["name"] for s in examples["samples"]} >= {"raven0-documented", "basic-transcript"}
    assert len(examples["scenarios"]) >= 5
    assert json.dumps(examples)  # plain JSON
    script = httpx.get(installed_server + "/playground/static/js/main.js", timeout=10)
    assert script.status_code == 200 and "function" in script.text
