"""The README stays true: every setting is in its configuration table, with its default."""

from __future__ import annotations

import json
import re
from pathlib import Path

from server.settings import Settings

README_PATH = Path(__file__).resolve().parents[1] / "README.md"
README = README_PATH.read_text()


def table_rows() -> dict[str, str]:
    rows = {}
    for line in README.splitlines():
        match = re.match(r"\|\s*`(PERCEPTION_LLM_[A-Z_]+)`\s*\|\s*(.*?)\s*\|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_setting_is_documented_with_its_default() -> None:
    rows = table_rows()
    expected = {
        f"PERCEPTION_LLM_{name.upper()}": field for name, field in Settings.model_fields.items()
    }
    assert set(rows) == set(expected)
    for env_name, field in expected.items():
        value = field.get_default(call_default_factory=True)
        row = rows[env_name]
        if isinstance(value, (list, dict)) and value:
            pointer = re.fullmatch(r"see `([\w/.]+)`", row)
            if pointer:  # a long default is pointed to: the file must hold every entry
                source = (README_PATH.parent / pointer.group(1)).read_text()
                assert all(f'"{item}"' in source for item in value), env_name
            else:
                assert json.loads(row.strip("`")) == value, env_name
            continue
        default = "unset" if value is None else str(value).lower()
        assert row.strip("`").lower() == default, env_name


def test_readme_names_the_two_commands() -> None:
    assert "pip install -e . && .venv/bin/perception-llm serve" in README
    assert "pip install -e '.[test]' && .venv/bin/python -m pytest" in README
