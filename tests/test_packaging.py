"""A real (non-editable) install contains every module and the template files: an editable
install hides a package left out of the build, the Docker image would not."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_every_module_and_template(tmp_path: Path) -> None:
    # Build from a clean copy: setuptools reuses a stale build/ directory, which hid the bug.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("server", "perception", "prompts"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("perception_llm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(p.relative_to(ROOT))
        for package in ("server", "perception", "prompts")
        for p in (ROOT / package).rglob("*.py")
    }
    expected |= {str(p.relative_to(ROOT)) for p in (ROOT / "prompts" / "templates").glob("*.j2")}
    assert expected - names == set()
