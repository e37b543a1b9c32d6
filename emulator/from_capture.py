"""A captured call, turned into a `simulate` scenario or a parser fixture (`perception-llm calls
export`): a real call becomes a regression test.

The scenario is rebuilt from the call's request and its parse: persona text without Tavus'
preamble (the scenario adds it back for its perception mode), the greeting, and one turn per user
message with the perception seen before it and the persona's reply after it. A call captured
with perception withheld (`PERCEPTION_LLM_CAPTURE_PERCEPTION`) exports without perception.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from perception import message_text, without_preamble
from scenarios.model import SILENCE, raven_turn_keys


def _decoded(row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    return json.loads(value) if isinstance(value, str) else value


def _name_for(row: dict[str, Any]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(row.get("conversation_id") or "call").lower())
    return f"captured-{slug.strip('-')[:40] or 'call'}-{row['id']}"


def _mode(parsed: dict[str, Any]) -> str:
    if parsed["mode"] == "basic":
        return "basic"
    if parsed["mode"] == "none":
        return "off"
    audio = any(item.get("audio") for item in parsed["observations"])
    return "raven-1" if audio else "raven"


def scenario_from_call(row: dict[str, Any]) -> dict[str, Any]:
    """A scenario (scenarios/model.py format) that replays the captured conversation."""
    request, parsed = _decoded(row, "request"), _decoded(row, "parsed")
    messages = request.get("messages") or []
    observed = {item["message_index"]: item for item in parsed["observations"]}
    clean_users = [m for m in parsed["messages"] if isinstance(m, dict) and m.get("role") == "user"]
    persona: list[str] = []
    greeting: str | None = None
    turns: list[dict[str, Any]] = []
    seen: dict[str, str] = {}  # raven fields since the last user turn
    users = 0
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        text = message_text(message.get("content")) if isinstance(message, dict) else None
        item = observed.get(index, {})
        if role in ("system", "developer") and item.get("source") == "raven":
            keys = raven_turn_keys()
            seen.update({keys[k]: v for k, v in item.items() if k in keys and v})
        elif role in ("system", "developer") and text:
            persona.append(without_preamble(text))
        elif role == "assistant" and text is not None:
            if not turns and greeting is None:
                greeting = text
            elif turns and "reply" not in turns[-1]:
                turns[-1]["reply"] = text
        elif role == "user":
            clean = clean_users[users] if users < len(clean_users) else {}
            users += 1
            speech = message_text(clean.get("content")) or ""
            turn: dict[str, Any] = {"user": SILENCE if item.get("silence") else speech, **seen}
            if item.get("audio"):
                turn["audio"] = item["audio"]
            if item.get("visual_scene"):
                turn["visual_scene"] = item["visual_scene"]
            turns.append(turn)
            seen = {}
    rule = parsed.get("emotion_rule")
    system_prompt = " ".join(part for part in persona if part)
    if rule:
        system_prompt = system_prompt.replace(rule["text"], "").strip()
    scenario: dict[str, Any] = {
        "name": _name_for(row),
        "description": (
            f"Captured call {row['id']} of conversation {row.get('conversation_id') or '-'}"
            f" ({_when(row)})."
        ),
        "perception": _mode(parsed),
        "system_prompt": system_prompt or "(no persona text)",
        "phoenix4": bool(rule),
        "turns": turns or [{"user": ""}],
    }
    if greeting is not None:
        scenario["greeting"] = greeting
    if request.get("tools"):
        scenario["tools"] = request["tools"]
    return scenario


def fixture_from_call(row: dict[str, Any]) -> dict[str, Any]:
    """A parser fixture (tests/fixtures/perception format): the request's messages and what the
    parser made of them when it was captured."""
    request, parsed = _decoded(row, "request"), _decoded(row, "parsed")

    def compact(fields: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in fields.items() if v is not None and v != {}}

    return {
        "description": f"Captured call {row['id']} of conversation "
        f"{row.get('conversation_id') or '-'}: the request as Tavus sent it.",
        "source": f"Captured by perception-llm from a live call on {_when(row)}.",
        "evidence": "A real request as received (headers not included). Check it holds no "
        "personal data before committing it.",
        "messages": request.get("messages") or [],
        "expected": {
            "mode": parsed["mode"],
            "latest": compact(parsed["latest"]),
            "observations": [compact(item) for item in parsed["observations"]],
            "messages": parsed["messages"],
            "issues": parsed["issues"],
        },
    }


def _when(row: dict[str, Any]) -> str:
    moment = datetime.datetime.fromtimestamp(float(row["started_at"]), datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
