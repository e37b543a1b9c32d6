"""Bearer-key authentication, compared in constant time."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from server.errors import AuthenticationError
from server.services import services
from server.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = services(request).settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_api_key(request: Request, settings: SettingsDep) -> None:
    """Reject the request with 401 unless it carries `Authorization: Bearer <api_key>`."""
    if settings.api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    expected = settings.api_key.get_secret_value().encode()
    # compare_digest on bytes: no timing signal about how much of the key matched.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise AuthenticationError(
            "Incorrect or missing API key. Send it as `Authorization: Bearer <key>`.",
            code="invalid_api_key",
        )


AuthDep = Depends(require_api_key)
