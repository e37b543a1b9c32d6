"""What every command needs: the one-line usage error, settings and templates or that error,
and reading a request body from a file or stdin."""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from prompts.templates import TemplateError, TemplateLibrary
from server.settings import ENV_PREFIX, Settings, load_settings


class UsageError(Exception):
    """A mistake in how the command was called or in its input: one line, exit 2."""


SECRET_FIELDS = frozenset({"api_key", "upstream_api_key", "upstream_headers"})  # never echoed


JSON_EXAMPLES = {  # what a JSON-valued setting looks like, for the one-line error
    "cors_origins": '["https://app.example"]',
    "emotion_values": '["neutral", "happy", "sad"]',
    "emotion_map": '{"frustrat": "calm", "smil": "happy"}',
}


def settings_or_error() -> Settings:
    """The settings, or one line that names the bad variable and what it accepts (exit 2)."""
    try:
        return load_settings()
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0])
        got = first.get("input")
        shown = ""
        if isinstance(got, str | int | float) and field not in SECRET_FIELDS:
            shown = f" (got {str(got)[:60]!r})"
        raise UsageError(f"{ENV_PREFIX}{field.upper()}: {first['msg']}{shown}") from None
    except SettingsError as error:  # a JSON-valued setting that is not JSON
        match = re.search(r'field "(\w+)"', str(error))
        field = match.group(1) if match else ""
        example = JSON_EXAMPLES.get(field, '{"name": "value"}')
        raise UsageError(f"{ENV_PREFIX}{field.upper()}: must be JSON, e.g. {example}") from None


def endpoint_url_or_error(url: str) -> str:
    """An endpoint's base URL as `--url` takes it; a host without `http://` was reported by the
    HTTP client as an "unsupported protocol 'localhost://'", after retries in `eval`."""
    try:
        parts = urllib.parse.urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # an unclosed [IPv6 bracket, a port that is not a number
        usable = False
    if not usable:
        raise UsageError(
            f"--url takes an http:// or https:// base URL, e.g. http://127.0.0.1:8000/v1, "
            f"got {url!r}"
        )
    return url


def templates_or_error(settings: Settings) -> TemplateLibrary:
    try:
        library = TemplateLibrary(settings.prompts_dir)
        library.get(settings.prompt)
        for name, _ in settings.split:
            library.get(name)
    except TemplateError as error:
        raise UsageError(str(error)) from None
    return library


def load_body(source: str) -> dict[str, Any]:
    """A chat-completions body from a file; a bare messages list becomes `{"messages": …}`."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read {source}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{source} is not JSON: {error.msg} at line {error.lineno}") from None
    if isinstance(data, list):
        data = {"messages": data}
    if not isinstance(data, dict):
        raise UsageError(f"{source} must hold a messages list or a chat-completions body")
    if not isinstance(data.get("messages"), list):
        raise UsageError(f'{source} has no "messages" list')
    return data
