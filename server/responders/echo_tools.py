"""The offline responder's tool calls: a whole tool round trip with no model (issue 21).

When a request offers `tools` and the last user turn names one of them (its name as written,
`get_current_weather`, or as words, "get current weather"; the earliest mention wins) — or
`tool_choice` names one — `echo` calls it: one `tool_calls` delta whose arguments are a value
built from the tool's JSON schema, with `finish_reason: "tool_calls"`. When the conversation
ends with tool results, `echo` quotes them. So clients' tool loops (openai-python, LangChain,
the Vercel AI SDK...) can be tried offline.

The arguments satisfy the schema's structure: required properties, types, `enum`/`const`,
`default`/`examples`, numeric bounds, string and array lengths, local `$ref`s, the first
branch of `anyOf`/`oneOf`, every branch of `allOf`. A string with no such hint is the user's
words after the tool's name ("get current weather for Paris" sends "Paris"). Not honoured:
`pattern` and `format` (a string that must match a regex gets the user's words unless the
schema gives `examples` or a `default`).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from perception import message_text

_MAX_DEPTH = 8  # a recursive schema ($ref to itself) stops here
_QUOTE_LIMIT = 400
_LINKING_WORDS = frozenset({"for", "in", "at", "about", "of", "on", "to", "with", "near"})


def tool_names(tools: list[Any] | None) -> list[str]:
    names = []
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            names.append(name)
    return names


def _folded(text: str) -> str:
    """Lower case, keeping every index (a letter whose lower case is longer stays as it is)."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else text


def _mentions(text: str, phrase: str) -> int:
    """Where `phrase` first occurs in `text` as whole words (case-insensitive), or -1. Linear:
    `str.find` and a check of the two neighbouring characters."""
    haystack, needle = _folded(text), _folded(phrase)
    start = haystack.find(needle)
    while start != -1:
        end = start + len(needle)
        before = haystack[start - 1] if start else " "
        after = haystack[end] if end < len(haystack) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return start
        start = haystack.find(needle, start + 1)
    return -1


def named_tool(tools: list[Any] | None, tool_choice: Any, user_text: str) -> str | None:
    """The tool the user's last turn names (or `tool_choice` forces), if any."""
    names = tool_names(tools)
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        forced = function.get("name") if isinstance(function, dict) else None
        if forced in names:
            return str(forced)
    if tool_choice == "none":
        return None
    found = []
    for name in names:
        spoken = name.replace("_", " ").replace("-", " ")
        places = [p for p in (_mentions(user_text, name), _mentions(user_text, spoken)) if p >= 0]
        if places:
            found.append((min(places), name))
    return min(found)[1] if found else None


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part) if isinstance(target, dict) else None
    return target if isinstance(target, dict) else {}


def example_value(schema: Any, root: dict[str, Any], words: str, depth: int = 0) -> Any:
    """A value valid against `schema` (within the limits in the module docstring)."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None if schema is False else {}
    for hint in ("const", "default"):
        if hint in schema:
            return schema[hint]
    for listed in ("enum", "examples"):
        values = schema.get(listed)
        if isinstance(values, list) and values:
            return values[0]
    for branches in ("anyOf", "oneOf"):
        options = schema.get(branches)
        if isinstance(options, list) and options:
            return example_value(options[0], root, words, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            if isinstance(part, dict):
                merged["properties"] = {
                    **merged.get("properties", {}),
                    **part.get("properties", {}),
                }
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.update(
                    {k: v for k, v in part.items() if k not in ("properties", "required")}
                )
        return example_value(merged, root, words, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        required = [n for n in schema.get("required") or () if isinstance(n, str)]
        return {
            name: example_value(properties.get(name, {}), root, words, depth + 1)
            for name in required
        }
    if kind == "array":
        count = schema.get("minItems") or 0
        item = example_value(schema.get("items", {}), root, words, depth + 1)
        return [item] * count if isinstance(count, int) else []
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(schema, words)


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    low = schema.get("minimum")
    if low is None and isinstance(schema.get("exclusiveMinimum"), int | float):
        low = schema["exclusiveMinimum"] + 1
    high = schema.get("maximum")
    if high is None and isinstance(schema.get("exclusiveMaximum"), int | float):
        high = schema["exclusiveMaximum"] - 1
    value = low if isinstance(low, int | float) else 0
    if isinstance(high, int | float) and value > high:
        value = high
    if integer:
        return int(value) if value == int(value) else int(value) + 1
    return value


def _string(schema: dict[str, Any], words: str) -> str:
    value = words
    longest = schema.get("maxLength")
    if isinstance(longest, int):
        value = value[:longest]
    shortest = schema.get("minLength")
    if isinstance(shortest, int) and len(value) < shortest:
        value = value.ljust(shortest, ".")
    return value


def tool_call_delta(tools: list[Any], name: str, user_text: str) -> dict[str, Any]:
    """The one `tool_calls` delta calling `name`, arguments built from its schema."""
    function = next(
        t["function"] for t in tools if isinstance(t, dict) and t["function"]["name"] == name
    )
    parameters = function.get("parameters")
    parameters = parameters if isinstance(parameters, dict) else {"type": "object"}
    words = _words_after(user_text, name) or user_text.strip()
    arguments = example_value(parameters, parameters, words)
    return {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_" + secrets.token_hex(12),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ]
    }


def _words_after(text: str, name: str) -> str:
    """What the user said after naming the tool ("get current weather for Paris" → "for
    Paris"), the likeliest argument."""
    for phrase in (name, name.replace("_", " ").replace("-", " ")):
        place = _mentions(text, phrase)
        if place >= 0:
            rest = text[place + len(phrase) :].strip(" ,.:;!?")
            first, _, others = rest.partition(" ")
            return others if first.lower() in _LINKING_WORDS and others else rest
    return ""


def tool_results(messages: list[Any]) -> list[str] | None:
    """`name returned: "…"` for each tool result the conversation ends with, or None when it
    does not end with tool results."""
    results: list[dict[str, Any]] = []
    index = len(messages)
    while (
        index
        and isinstance(messages[index - 1], dict)
        and messages[index - 1].get("role") == "tool"
    ):
        index -= 1
        results.insert(0, messages[index])
    if not results:
        return None
    names: dict[str, str] = {}
    if index and isinstance(messages[index - 1], dict):
        for call in messages[index - 1].get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[str(call.get("id"))] = str(call["function"].get("name") or "the tool")
    quoted = []
    for result in results:
        text = (message_text(result.get("content")) or "").strip()
        if len(text) > _QUOTE_LIMIT:
            text = text[:_QUOTE_LIMIT] + "…"
        quoted.append(
            f'{names.get(str(result.get("tool_call_id")), "The tool")} returned: "{text}".'
        )
    return quoted
