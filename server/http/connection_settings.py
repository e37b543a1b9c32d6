"""The connection settings (who may connect, and how long and how much they may send), a part of
`Settings` kept in its own module."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from server.http.connection_shares import parse_networks


class ConnectionSettings(BaseSettings):
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Host names a keyless loopback server answers besides loopback ones, as JSON "
            '(e.g. `["devbox.internal"]`); any other `Host` gets 400 (DNS rebinding).'
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            'Addresses or networks of load balancers, as JSON (e.g. `["10.0.0.0/8"]`): their '
            "connections are not one client's share when the connection cap evicts idle ones."
        ),
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "Deadline for a request's line and headers, from the connection (or the request's "
            "first byte); slow or silent clients are closed with 408."
        ),
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="Deadline for a request body, from the end of its headers (408)."
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=4096,
        description="Largest request line plus headers, in bytes (431 beyond).",
    )
    max_connections: int = Field(
        4096,
        ge=16,
        description=(
            "Open connections per process; at the cap an idle one makes room. `serve` raises "
            "the file limit to fit it (deployments: set `LimitNOFILE`/`--ulimit nofile` above it)."
        ),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, values: list[str]) -> list[str]:
        parse_networks(values)  # a typo stops start-up instead of shielding nobody
        return values
