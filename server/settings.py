"""Runtime settings: one pydantic-settings class read from `PERCEPTION_LLM_*` env vars and `.env`.

Every field carries a description; the README's configuration table mirrors them (a test keeps
the two in step). Settings are built by `load_settings()` when the app or CLI starts, never at
import time, so tests can construct their own.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from server.completion.emotion_values import DEFAULT_EMOTION_MAP, DEFAULT_EMOTION_VALUES
from server.completion.reply_size import DEFAULT_MAX_REPLY_CHARS
from server.experiment_settings import ExperimentSettings
from server.http.connection_settings import ConnectionSettings
from server.replica_settings import ReplicaSettings

ENV_PREFIX = "PERCEPTION_LLM_"


class Settings(ExperimentSettings, ConnectionSettings, ReplicaSettings):
    """Everything an operator can configure, with safe defaults."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    host: str = Field(
        "127.0.0.1",
        description="Interface `perception-llm serve` binds to (`--host` overrides).",
    )
    port: int = Field(
        8000, ge=0, le=65535, description="TCP port `perception-llm serve` listens on (`--port`)."
    )
    api_key: SecretStr | None = Field(
        None,
        description=(
            "Bearer key clients must send. Unset: no auth, and the server refuses non-loopback "
            "hosts unless `allow_insecure` is set."
        ),
    )
    api_key_previous: SecretStr | None = Field(
        None,
        description=(
            "A second key accepted while clients move to a new `api_key` (rotation without "
            "downtime: set the new key, move the old one here, unset it once clients switched)."
        ),
    )
    allow_insecure: bool = Field(
        False,
        description="Allow serving a non-loopback host without an API key (`--insecure`).",
    )
    echo_model: str = Field(
        "echo", description="Model id of the built-in offline responder, listed by `/v1/models`."
    )
    echo_word_delay_ms: float = Field(
        0.0,
        ge=0,
        le=5000,
        description="Pause between words of the offline responder, to mimic a model's pacing.",
    )
    upstream_base_url: AnyHttpUrl | None = Field(
        None,
        description=(
            "Base URL of the OpenAI-compatible response model (e.g. `https://api.openai.com/v1`)."
            " Unset: the offline `echo` responder answers."
        ),
    )
    upstream_api_key: SecretStr | None = Field(None, description="API key for the upstream.")
    upstream_model: str | None = Field(
        None, description="Model to ask the upstream for, overriding the request's `model`."
    )
    upstream_headers: dict[str, str] = Field(
        default_factory=dict,
        description='Extra headers for the upstream, as JSON (e.g. `{"api-key": "…"}` for Azure).',
    )
    upstream_query: dict[str, str] = Field(
        default_factory=dict,
        description='Default query for the upstream, as JSON (e.g. `{"api-version": "…"}`).',
    )
    upstream_check: bool = Field(
        True,
        description="At start-up, ask the upstream for its models once and log whether it answers.",
    )
    upstream_connect_timeout_seconds: float = Field(
        3.0, gt=0, description="Deadline to connect to the upstream."
    )
    first_token_timeout_seconds: float = Field(
        8.0,
        gt=0,
        description=(
            "Deadline from request to the upstream's first token (one retry fits inside it);"
            " Tavus' client gives up after about 10 s."
        ),
    )
    idle_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "Longest gap allowed between upstream chunks after the first (comments and blank "
            "lines do not count as progress)."
        ),
    )
    total_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "Longest a whole reply may take, however steadily the upstream trickles; the reply "
            "ends with an error event after it (a spoken turn is seconds long)."
        ),
    )
    send_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "Longest one write to a client may block: a client that stops reading is "
            "disconnected after it, freeing its slot and upstream connection."
        ),
    )
    answer_config_check: bool = Field(
        True,
        description=(
            "Answer Tavus' configuration check (conversation id `tavus-openai-compat-test`) at "
            "once with a short line, without calling the upstream."
        ),
    )
    fallback_text: str = Field(
        "Sorry, I lost my train of thought for a second. Could you say that again?",
        description=(
            "Spoken instead of an error when the upstream fails before the first token of a"
            " stream (a silent replica is the worst outcome). Empty: return the error instead."
        ),
    )
    share_identical_requests: bool = Field(
        True,
        description=(
            "Identical requests (same conversation id and body) that arrive while one is in "
            "flight share its upstream generation: one upstream call, each client gets the "
            "whole stream (Tavus retries and speculates)."
        ),
    )
    emotion_tags: bool = Field(
        True,
        description=(
            "When the system text carries Tavus' Phoenix-4 rule, guarantee every streamed reply "
            'begins with one well-formed `<emotion value="…"/>` (the model\'s own, repaired, or '
            "one chosen from the user's perceived emotions)."
        ),
    )
    emotion_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EMOTION_VALUES),
        description=(
            "Emotion values allowed in the tag when the rule lists none, as JSON (the rule's "
            "own examples are added)."
        ),
    )
    emotion_map: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_EMOTION_MAP),
        description=(
            "Words in the perceived emotions (or in a model's unknown value) and the reply "
            "emotion each one chooses, as JSON; the earliest word found wins, else `neutral`."
        ),
    )
    keepalive_seconds: float = Field(
        5.0,
        gt=0,
        description=(
            "Interval of SSE comment keep-alives (`: keep-alive`) on open streams, so proxies "
            "and Tavus' read timeout do not cut a quiet stream."
        ),
    )
    perception_max_field_chars: int = Field(
        4000,
        ge=16,
        description="Cap on each perception field's length; longer values are cut and reported.",
    )
    prompt: str = Field(
        "default",
        description=(
            "Prompt template used when a request names none (body `prompt`, header "
            "`X-Prompt-Template` or query `?prompt=` choose one per request)."
        ),
    )
    prompts_dir: Path | None = Field(
        None,
        description="Directory of extra `NAME.j2` templates (a built-in name there overrides it).",
    )
    context_budget_tokens: int = Field(
        5000,
        ge=256,
        description=(
            "Prompt-token budget for the response model (Tavus: best under ~5k). Over it, older "
            "perception collapses to the latest snapshot, then the oldest turns are dropped."
        ),
    )
    playground: bool = Field(
        True, description="Serve the web playground at `/playground` (static, no data in it)."
    )
    shutdown_grace_seconds: float = Field(
        10.0,
        ge=0,
        description=(
            "On SIGTERM, how long in-flight streams may run before they are ended with [DONE]."
        ),
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest request body, in bytes (413 beyond; a 32k-token chat is ~130 kB).",
    )
    max_loop_lag_seconds: float = Field(
        0.1,
        gt=0,
        description=(
            "While the event loop runs this late (smoothed), new completions get 429 so the ones "
            "in flight and `/healthz` stay prompt; an idle loop runs ~0.1 ms late."
        ),
    )
    max_messages: int = Field(2000, ge=1, description="Most messages in one request (400 beyond).")
    max_message_chars: int = Field(
        200_000, ge=1, description="Most characters in one message's text (400 beyond)."
    )
    max_reply_chars: int = Field(
        DEFAULT_MAX_REPLY_CHARS,
        ge=1000,
        description=(
            "Largest reply held whole: a non-streamed reply past it ends with 502 (a streamed "
            "one is never held), and the capture keeps at most this much of a reply."
        ),
    )
    max_tools: int = Field(128, ge=0, description="Most tools in one request (400 beyond).")
    max_concurrent_streams: int = Field(
        256,
        ge=1,
        description="Most completions in flight per process; more get 429 with Retry-After.",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="Log level: debug, info, warning, error or critical."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or one JSON object per line (`json`)."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description=(
            'Browser origins allowed by CORS, as JSON (e.g. `["https://app.example"]`).'
            " Empty: no CORS."
        ),
    )
    access_log: bool = Field(
        False,
        description=(
            "uvicorn's access log. Off: each completion already logs one line, and uvicorn writes"
            " its line before the first byte, inside time to first token."
        ),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case_level(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("api_key", "api_key_previous", "upstream_api_key")
    @classmethod
    def _key_is_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # `PERCEPTION_LLM_API_KEY=` must not count as "a key is set": an empty Bearer would pass.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty or blank; unset it to run without a key")
        return value

    @field_validator("emotion_values")
    @classmethod
    def _emotion_values_are_words(cls, values: list[str]) -> list[str]:
        # Each value is written into `<emotion value="…"/>` verbatim: only plain words fit.
        words = [value.strip().lower() for value in values]
        if not words or not all(re.fullmatch(r"[a-z][a-z_-]{0,31}", word) for word in words):
            raise ValueError('must be a JSON list of plain words, e.g. ["neutral", "happy"]')
        return words

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction from anything relayed or logged."""
        keys = (self.api_key, self.api_key_previous, self.upstream_api_key)
        values = [key.get_secret_value() for key in keys if key]
        values.extend(self.upstream_headers.values())
        return [value for value in values if len(value) >= 4]


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings() -> Settings:
    """Read settings from the environment and `.env` (called at start-up, not import)."""
    return Settings()
