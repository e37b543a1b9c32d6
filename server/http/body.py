"""Reading and validating JSON request bodies into clear 400s (never FastAPI's 422).

Routes read the raw body themselves instead of declaring a pydantic body parameter: the raw
JSON is what gets forwarded upstream (unknown fields intact), and every failure — not JSON, not
an object, wrong types — becomes one OpenAI error body with a useful `param`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from server.errors import (
    InvalidRequestError,
    UnsupportedMediaTypeError,
    describe_validation_errors,
)

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_json_object(request: Request) -> dict[str, Any]:
    require_json_content_type(request)
    return decode_json_object(await request.body())


def require_json_content_type(request: Request) -> None:
    """POST bodies must be declared JSON. A web page may POST `text/plain` to a loopback server
    without a CORS preflight; insisting on `application/json` makes the browser ask first, so a
    page the developer visits cannot spend the upstream key."""
    declared = request.headers.get("content-type", "")
    media = declared.split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise UnsupportedMediaTypeError(
        f"Send the body as JSON with `Content-Type: application/json` (got {declared[:60]!r})."
    )


# JSON objects in one body. Decoding and validating hold the GIL (C and Rust code): 120,000 tiny
# messages in 4 MB took 58 ms to decode and 280 ms to validate, time the event loop cannot run
# even when the work is in a thread (issue 23). A long Tavus conversation has a few hundred.
MAX_JSON_OBJECTS = 16_384


def check_json_object_count(raw: bytes, limit: int = MAX_JSON_OBJECTS) -> None:
    """400 when `raw` holds more than `limit` JSON objects. Counting `{` bytes is a C scan of a
    millisecond per MB; only when that count is over the limit (braces inside strings count
    too) are the objects outside strings counted exactly, string by string."""
    if raw.count(b"{") <= limit:
        return
    objects, position = 0, 0
    while (found := _BRACE_OR_QUOTE.search(raw, position)) is not None:
        if found.group() == b"{":
            objects += 1
            if objects > limit:
                raise InvalidRequestError(
                    f"The request body holds more than {limit} JSON objects.",
                    code="too_many_objects",
                )
            position = found.end()
        else:
            position = _string_end(raw, found.end())


_BRACE_OR_QUOTE = re.compile(rb'[{"]')
BACKSLASH = 0x5C


def _string_end(raw: bytes, start: int) -> int:
    """Where the JSON string opened just before `start` ends. `bytes.find` jumps from quote to
    quote (one regex over a 4 MB string held the GIL for 0.35 s); a quote after an odd run of
    backslashes is escaped. Each byte is looked at a bounded number of times: linear."""
    while (quote := raw.find(b'"', start)) >= 0:
        before = quote
        while before > start and raw[before - 1] == BACKSLASH:
            before -= 1
        if (quote - before) % 2 == 0:
            return quote + 1
        start = quote + 1
    return len(raw)


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in `raw`, or an `InvalidRequestError` that says what is wrong with it."""
    if not raw.strip():
        raise InvalidRequestError("The request body is empty; send a JSON object.")
    check_json_object_count(raw)
    try:
        data = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError as error:
        raise InvalidRequestError(f"The request body is not valid UTF-8: {error.reason}.") from None
    except json.JSONDecodeError as error:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request "
            f"({error.msg} at line {error.lineno} column {error.colno})."
        ) from None
    except RecursionError:
        raise InvalidRequestError("The JSON body is nested too deeply.") from None
    except ValueError as error:  # a number past Python's 4,300-digit limit, NaN or Infinity
        raise InvalidRequestError(
            f"The JSON body holds a value we cannot accept: {error}"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"The request body must be a JSON object, not {type(data).__name__}."
        )
    if _SURROGATE_ESCAPE.search(raw):
        try:
            repaired: dict[str, Any] = _without_lone_surrogates(data)
        except RecursionError:
            raise InvalidRequestError("The JSON body is nested too deeply.") from None
        return repaired
    return data


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # 1e999: would be forwarded as the bare token Infinity
        raise ValueError(f"{text[:20]} is out of range for a JSON number")
    return value


def _refuse_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; Python accepts them, and forwarding them upstream as bare
    # tokens would send invalid JSON.
    raise ValueError(f"{name} is not valid JSON")


# JSON may spell a lone UTF-16 surrogate ("\ud800"), which Python's parser accepts but which is
# not a character: echoing it back (or forwarding it) fails to encode as UTF-8. One regex pass
# over the raw bytes finds any surrogate escape; only then are strings checked and repaired.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


_SURROGATE = re.compile("[\ud800-\udfff]")  # after parsing, valid pairs are single characters


def _without_lone_surrogates(node: Any) -> Any:
    if isinstance(node, str):
        return _SURROGATE.sub("\ufffd", node)
    if isinstance(node, dict):
        return {key: _without_lone_surrogates(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_without_lone_surrogates(item) for item in node]
    return node


def validate_body(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        message, param = describe_validation_errors(list(error.errors()), data)
        raise InvalidRequestError(message, param=param) from None
