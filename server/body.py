"""Reading and validating JSON request bodies into clear 400s (never FastAPI's 422).

Routes read the raw body themselves instead of declaring a pydantic body parameter: the raw
JSON is what gets forwarded upstream (unknown fields intact), and every failure — not JSON, not
an object, wrong types — becomes one OpenAI error body with a useful `param`.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from server.errors import InvalidRequestError, describe_validation_errors

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequestError("The request body is empty; send a JSON object.")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as error:
        raise InvalidRequestError(f"The request body is not valid UTF-8: {error.reason}.") from None
    except json.JSONDecodeError as error:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request "
            f"({error.msg} at line {error.lineno} column {error.colno})."
        ) from None
    except RecursionError:
        raise InvalidRequestError("The JSON body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"The request body must be a JSON object, not {type(data).__name__}."
        )
    return data


def validate_body(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        message, param = describe_validation_errors(list(error.errors()), data)
        raise InvalidRequestError(message, param=param) from None
