"""Bearer-key authentication, compared in constant time."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from server.errors import AuthenticationError
from server.services import services
from server.settings import ENV_PREFIX, Settings


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


MIN_PUBLIC_KEY_CHARS = 16
KEY_HOWTO = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def short_key_problem(settings: Settings) -> str | None:
    """Why the keys are too weak for a public interface, or None (issue 23: a 3-character key
    was accepted on 0.0.0.0, and a key that short cannot even be redacted from logs)."""
    for name, key in (
        ("API_KEY", settings.api_key),
        ("API_KEY_PREVIOUS", settings.api_key_previous),
    ):
        if key is not None and len(key.get_secret_value().strip()) < MIN_PUBLIC_KEY_CHARS:
            return (
                f"{ENV_PREFIX}{name} has {len(key.get_secret_value().strip())} characters; a key "
                f"on a public interface needs at least {MIN_PUBLIC_KEY_CHARS}: {KEY_HOWTO}"
            )
    return None
