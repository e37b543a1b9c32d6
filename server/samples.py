"""The sample Tavus request bodies shipped with the package (`server/samples/*.json`).

Bodies shaped like Tavus traffic, one per perception mode, from shared/samples: the playground
offers them, the README's commands use them, and the tests read the same files (one copy).
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any


def sample_requests() -> dict[str, dict[str, Any]]:
    """Every shipped sample, by name (the file name without `.json`), in name order."""
    folder = files("server").joinpath("samples")
    return {
        entry.name.removesuffix(".json"): json.loads(entry.read_text(encoding="utf-8"))
        for entry in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if entry.name.endswith(".json")
    }
