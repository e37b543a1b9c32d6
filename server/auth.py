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
    """Reject the request with 401 unless it carries `Authorization: Bearer <key>`, the key
    being `api_key` or, during a rotation, `api_key_previous`."""
    if settings.api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    sent = token.strip().encode()
    # compare_digest on bytes: no timing signal about how much of the key matched. Both keys
    # are always compared, so the time does not say which one matched (rotation, issue 23).
    matched = hmac.compare_digest(sent, settings.api_key.get_secret_value().encode())
    if settings.api_key_previous is not None:
        matched |= hmac.compare_digest(sent, settings.api_key_previous.get_secret_value().encode())
    if scheme.lower() != "bearer" or not matched:
        raise AuthenticationError(
            "Incorrect or missing API key. Send it as `Authorization: Bearer <key>`.",
            code="invalid_api_key",
        )


AuthDep = Depends(require_api_key)
