"""Inbound OpenAI request models: validate what we rely on, keep everything else.

Following openai-python's `types/chat` and vLLM's `OpenAIBaseModel`, inbound models accept
unknown fields (Tavus merges a persona's `extra_body` into the top level of the body), because
rejecting a field some provider understands would break a persona. The raw JSON body is kept
alongside the model and is what gets forwarded, so nothing a client sent is lost in a
round-trip through pydantic.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class InboundModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(InboundModel):
    """One element of an array `content`; only `text` parts carry text we read."""

    type: str = Field(description="Part type: `text`, `image_url`, `input_audio`, ...")
    text: str | None = Field(None, description="The text of a `text` part.")


class ChatMessage(InboundModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"] = Field(
        description="Author of the message."
    )
    content: str | list[ContentPart] | None = Field(
        None, description="A string, null, or an array of content parts."
    )
    name: str | None = Field(None, description="Optional participant name.")
    tool_calls: list[dict[str, Any]] | None = Field(
        None, description="Tool calls made by the assistant, passed through untouched."
    )
    tool_call_id: str | None = Field(None, description="The call a `tool` message answers.")


class StreamOptions(InboundModel):
    include_usage: StrictBool = Field(
        False, description="Send one extra chunk with `usage` and no choices before [DONE]."
    )


class ChatCompletionRequest(InboundModel):
    """A `POST /v1/chat/completions` body."""

    model: str = Field("", description="Requested model id (the response model may override).")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    stream: StrictBool = Field(False, description="Stream `chat.completion.chunk` events over SSE.")
    stream_options: StreamOptions | None = Field(None, description="Streaming options.")
    n: StrictInt | None = Field(None, description="Number of choices; only 1 is supported.")
    tools: list[dict[str, Any]] | None = Field(None, description="Tools the model may call.")
    tool_choice: str | dict[str, Any] | None = Field(None, description="Tool choice policy.")

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its `$defs` inlined, to embed in an OpenAPI document (where
    a `#/$defs/...` reference would point at nothing). Our request models are not recursive."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


# The chat-completions body, inlined in the OpenAPI schema of the routes that read one raw.
REQUEST_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(ChatCompletionRequest)}},
    }
}
