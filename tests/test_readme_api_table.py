"""The README's API table names every route the server documents (issue 31: the three
`/v1/experiments` routes of the eval round were missing, so a newcomer could not find them)."""

from __future__ import annotations

import re
from pathlib import Path

from server.app import create_app
from tests.conftest import make_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_documented_route_is_in_the_readme_api_table() -> None:
    section = README.read_text(encoding="utf-8").split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    rows = {
        (method, re.sub(r"\{\w+\}", "{}", path))
        for method, path in re.findall(r"^\| `(GET|POST|DELETE|PUT) (/[^` ]*)`", section, re.M)
    }
    spec = create_app(make_settings()).openapi()
    routes = {
        (method.upper(), re.sub(r"\{\w+\}", "{}", path))
        for path, operations in spec["paths"].items()
        for method in operations
    }
    assert routes - rows == set()
