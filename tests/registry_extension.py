"""Run as a script by tests/test_field_registry.py: adds a field to the perception registry
before anything imports it (one row, as a developer would), then drives the whole app with it
and prints what each consumer made of it as JSON.

A fresh process, because the parsed models are built from the registry when `perception` is
first imported; the test's own process keeps the shipped registry.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NEW_ROW = "posture"
VALUE = "Slouching, arms crossed"


def extend_registry() -> None:
    spec = importlib.util.spec_from_file_location(
        "perception.fields", ROOT / "perception/fields.py"
    )
    assert spec is not None and spec.loader is not None
    fields = importlib.util.module_from_spec(spec)
    sys.modules["perception.fields"] = fields  # `import perception` finds this one
    spec.loader.exec_module(fields)
    # The one line a developer adds (sensitivity and privacy left to their defaults).
    row = fields.PerceptionField(NEW_ROW, "posture", "Your posture", "raven `<user_posture>`.", tags=("user_posture",))  # fmt: skip
    fields.FIELDS = (*fields.FIELDS, row)


def call(mode: str, database: Path) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.services import services
    from server.settings import Settings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        allowed_hosts=["testserver"],
        upstream_check=False,
        capture=f"sqlite:///{database}",
        capture_perception=mode,
    )
    app = create_app(settings)
    raven = f"<user_posture>{VALUE}</user_posture> <user_mood_ring>Blue</user_mood_ring>"
    messages = [
        {"role": "system", "content": "You are a tutor."},
        {"role": "system", "content": raven},
        {"role": "user", "content": "Hello"},
    ]
    with TestClient(app) as client:
        reply = client.post("/v1/chat/completions", json={"model": "echo", "messages": messages})
        parsed = client.post("/v1/perception/parse", json={"messages": messages})
        capture = services(app).capture
        assert capture is not None
        deadline = time.monotonic() + 20
        while capture.written < 1:
            assert time.monotonic() < deadline, "the call was not written"
            time.sleep(0.01)
        (conversation,) = capture.store.conversations()
        (summary,) = capture.store.calls_of(conversation["conversation_id"])
        row = capture.store.call(summary["id"])
    return {
        "reply": reply.json()["choices"][0]["message"]["content"],
        "parsed": parsed.json(),
        "stored": {key: value for key, value in (row or {}).items() if isinstance(value, str)},
    }


if __name__ == "__main__":
    extend_registry()
    tmp = Path(sys.argv[1])
    print(json.dumps({mode: call(mode, tmp / f"{mode}.db") for mode in ("shapes", "no_screen")}))
