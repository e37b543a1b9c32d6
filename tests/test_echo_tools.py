"""The offline responder's tool round trip (issue 21), through the real server with the official
SDK: one `tool_calls` delta whose arguments validate against the tool's schema, then the tool's
result quoted. Schemas are real shapes: OpenAI's docs example, pydantic-generated ones with
`$defs` and nullable unions (what LangChain and pydantic-ai send), bounds, enums, arrays."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import openai
import pytest
from pydantic import BaseModel, Field

from server.inprocess import running_server
from server.responders.echo_tools import example_value, named_tool
from tests.conftest import make_settings


class Address(BaseModel):
    city: str
    country_code: str = Field(min_length=2, max_length=2)


class Booking(BaseModel):
    guests: int = Field(ge=1, le=8)
    address: Address
    note: str | None
    nights: list[int] = Field(min_length=2)
    rate: float = Field(gt=10)


SCHEMAS: dict[str, dict[str, Any]] = {
    # OpenAI's function-calling guide.
    "openai_weather": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location", "unit"],
    },
    # pydantic v2, as LangChain's `bind_tools` and pydantic-ai emit it.
    "pydantic_nested": Booking.model_json_schema(),
    "no_parameters": {"type": "object", "properties": {}},
    "all_of": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
            {"properties": {"b": {"const": 3}}, "required": ["b"]},
        ]
    },
    "strict_mode": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"q": {"type": ["string", "null"], "minLength": 5}},
        "required": ["q"],
    },
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_built_arguments_validate_against_the_schema(name: str) -> None:
    schema = SCHEMAS[name]
    value = example_value(schema, schema, "Paris")
    jsonschema_rs.validate(schema, value)


@pytest.mark.parametrize(
    ("text", "choice", "expected"),
    [
        ("Please get_weather now", None, "get_weather"),
        ("can you get weather for me", None, "get_weather"),
        ("GET WEATHER", None, "get_weather"),
        ("what's the weather", None, None),  # the tool is not named
        ("forget_weather_x", None, None),  # inside another word
        ("book_room then get_weather", None, "book_room"),  # the earliest mention
        ("get_weather", "none", None),
        ("hello", {"type": "function", "function": {"name": "book_room"}}, "book_room"),
    ],
)
def test_which_tool_is_named(text: str, choice: Any, expected: str | None) -> None:
    tools = [
        {"type": "function", "function": {"name": n, "parameters": {}}}
        for n in ("get_weather", "book_room")
    ]
    assert named_tool(tools, choice, text) == expected


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with running_server(make_settings()) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def tool(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": schema}}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_a_streamed_round_trip_with_no_model(client: openai.OpenAI, name: str) -> None:
    schema = SCHEMAS[name]
    tools = [tool("lookup_" + name, schema), tool("other", {"type": "object"})]
    messages: list[Any] = [
        {"role": "system", "content": "<user_emotions>Curious.</user_emotions>"},
        {"role": "user", "content": f"Please lookup {name.replace('_', ' ')} for Paris."},
    ]
    chunks = list(
        client.chat.completions.create(model="echo", messages=messages, tools=tools, stream=True)
    )
    fragments = [f for c in chunks if c.choices for f in c.choices[0].delta.tool_calls or ()]
    assert len(fragments) == 1  # one delta, the whole call
    call = fragments[0]
    assert call.function is not None and call.function.name == "lookup_" + name
    assert call.id and call.type == "function"
    jsonschema_rs.validate(schema, json.loads(call.function.arguments or ""))
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": call.function.model_dump()}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 18}'},
    ]
    reply = client.chat.completions.create(model="echo", messages=messages, tools=tools)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == (
        f'lookup_{name} returned: "{{"temperature_c": 18}}".'
    )


def test_the_users_words_become_a_free_text_argument(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "Get current weather for San Francisco, please."}],
        tools=[tool("get_current_weather", SCHEMAS["openai_weather"])],
    )
    calls = reply.choices[0].message.tool_calls or []
    assert reply.choices[0].finish_reason == "tool_calls" and len(calls) == 1
    arguments = json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    assert arguments == {"location": "San Francisco, please", "unit": "celsius"}


def test_without_a_named_tool_echo_answers_as_before(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "What's the weather?"}],
        tools=[tool("get_current_weather", SCHEMAS["openai_weather"])],
    )
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content is not None
    assert reply.choices[0].message.content.startswith('You said: "What\'s the weather?"')
