"""server/http/protocol.py subclasses uvicorn's private `HttpToolsProtocol`: this file fails loudly
when what it relies on changes (an upgrade outside the pinned range must be re-checked), and
holds the regression test for the warning uvicorn used to log for every `/healthz`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import httpx
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from server.app import create_app
from server.http.protocol import UVICORN_ATTRIBUTES, UVICORN_CALLBACKS, GuardedHttpProtocol
from tests.conftest import make_settings
from tests.live import live_server

ROOT = Path(__file__).resolve().parent.parent


def pinned_uvicorn_range() -> tuple[tuple[int, ...], tuple[int, ...]]:
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'"uvicorn\[standard\]>=([\d.]+),<([\d.]+)"', text)
    assert found, "pyproject.toml must pin uvicorn to a >=X,<Y range (server/http/protocol.py)"
    return tuple(map(int, found[1].split("."))), tuple(map(int, found[2].split(".")))


def test_the_installed_uvicorn_is_in_the_pinned_range() -> None:
    low, high = pinned_uvicorn_range()
    installed = tuple(int(part) for part in version("uvicorn").split(".")[:3])
    assert low <= installed < high, f"uvicorn {version('uvicorn')} is outside {low}..{high}"


def test_the_private_attributes_and_callbacks_we_use_still_exist() -> None:
    config = uvicorn.Config(create_app(make_settings()), loop="asyncio")
    config.load()
    loop = asyncio.new_event_loop()
    try:
        protocol = HttpToolsProtocol(config, ServerState(), app_state={}, _loop=loop)
    finally:
        loop.close()
    # Set in __init__, or (url, client, transport) in the callbacks that fill them.
    source = inspect.getsource(HttpToolsProtocol)
    missing = [
        name
        for name in UVICORN_ATTRIBUTES
        if not hasattr(protocol, name) and not re.search(rf"self\.{name} \+?= ", source)
    ]
    assert not missing, (
        f"uvicorn's HttpToolsProtocol lost {missing}: re-check server/http/protocol.py"
    )
    for name in UVICORN_CALLBACKS:
        ours = inspect.signature(getattr(GuardedHttpProtocol, name))
        theirs = inspect.signature(getattr(HttpToolsProtocol, name))
        assert list(ours.parameters) == list(theirs.parameters), f"{name} changed its signature"
    # The parser methods the guard calls, and the cycle flags it reads.
    assert hasattr(protocol.parser, "get_method") and hasattr(protocol.parser, "feed_data")
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    flags = inspect.getsource(RequestResponseCycle.__init__)
    for flag in ("response_started", "response_complete"):
        assert f"self.{flag}" in flags, f"RequestResponseCycle lost {flag}"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name} {record.getMessage()}")


@contextmanager
def server_log() -> Iterator[Records]:
    """Records of uvicorn's and our loggers (attached after uvicorn configured its logging,
    which replaces the handlers of the loggers it names)."""
    records = Records()
    watched = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "server")]
    for logger in watched:
        logger.addHandler(records)
    try:
        yield records
    finally:
        for logger in watched:
            logger.removeHandler(records)


def test_healthz_probes_write_nothing_to_the_log() -> None:
    # Regression (issue 21, item 2): every probe logged "Invalid HTTP request received." at
    # WARNING, so a load balancer probing every few seconds flooded the log.
    with live_server(make_settings(), log_level="info") as server, server_log() as log:
        for _ in range(3):
            with urllib.request.urlopen(server.url + "/healthz", timeout=10) as answer:
                assert answer.status == 200
            assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
            curl = subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", server.url + "/healthz"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert curl.stdout == "200", curl.stderr
    noisy = [line for line in log.lines if line.split()[0] in ("WARNING", "ERROR")]
    assert noisy == []
