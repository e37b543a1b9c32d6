"""The upstream's `/models` answer, read once at start-up so `/v1/models` can list the models a
request may name (the upstream's first, then `echo`)."""

from __future__ import annotations

import json

MODELS_LIST_BYTES = 1_000_000  # OpenAI's own list is ~10 kB; a bigger answer is cut, not read
MAX_LISTED_MODELS = 200


def model_ids(listing: bytes) -> list[str]:
    """Model ids from an OpenAI-style `/models` answer; anything else gives none."""
    try:
        data = json.loads(listing).get("data")
    except (ValueError, AttributeError):
        return []
    ids = (
        [item.get("id") for item in data if isinstance(item, dict)]
        if isinstance(data, list)
        else []
    )
    return [name for name in ids if isinstance(name, str) and name][:MAX_LISTED_MODELS]
