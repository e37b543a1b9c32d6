from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.settings import Settings
from tests.live import running_server

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def make_settings(**overrides: Any) -> Settings:
    """Settings isolated from the developer's environment and `.env`. Load shedding by loop lag
    is relaxed unless a test asks for it: a busy CI machine must not turn a test's second
    request into a 429 (the shedding itself is tested in test_limits.py)."""
    defaults = {"max_loop_lag_seconds": 2.0, "upstream_check": False}  # scripts see only calls
    # Starlette's TestClient sends `Host: testserver`, which a keyless server would refuse.
    defaults["allowed_hosts"] = ["testserver"]
    return Settings(_env_file=None, **{**defaults, **overrides})  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PERCEPTION_LLM_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def live_url() -> Iterator[str]:
    """A server with default settings (offline responder, no key)."""
    with running_server(make_settings()) as url:
        yield url


@pytest.fixture(scope="session")
def keyed_url() -> Iterator[str]:
    """A server that requires `Authorization: Bearer test-key`."""
    with running_server(make_settings(api_key="test-key")) as url:
        yield url


SAMPLES = ROOT / "server" / "samples"  # the shipped sample requests (from shared/samples)


def load_sample(name: str) -> dict[str, Any]:
    """A request body shaped like Tavus traffic, as shipped with the package."""
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return data
