"""`perception-llm serve`: uvicorn with our protocol, settings checked first."""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import socket
import sys
import time

from server.capture.settings import DEFAULT_CAPTURE_URL
from server.commands.common import UsageError, settings_or_error, templates_or_error
from server.http.auth import short_key_problem
from server.http.observability import log_config
from server.http.shutdown import exit_cleanly_on_signals
from server.settings import ENV_PREFIX, Settings, is_loopback


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = settings_or_error()
    templates_or_error(settings)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    os.environ["PERCEPTION_LLM_HOST"] = host  # the app's Host check depends on it (loopback)
    if args.insecure:  # the workers read settings from the environment (the Host check)
        os.environ["PERCEPTION_LLM_ALLOW_INSECURE"] = "true"
        settings = settings.model_copy(update={"allow_insecure": True})
    if args.capture is not None:  # the workers read settings from the environment
        os.environ["PERCEPTION_LLM_CAPTURE"] = args.capture or DEFAULT_CAPTURE_URL
        settings = settings.model_copy(update={"capture": os.environ["PERCEPTION_LLM_CAPTURE"]})
    if settings.capture:
        check_capture_url(settings.capture)
    if settings.api_key is None and not settings.allow_insecure and not is_loopback(host):
        raise UsageError(
            f"refusing to serve {host} without an API key: set PERCEPTION_LLM_API_KEY, "
            "or pass --insecure to serve it unauthenticated"
        )
    if not is_loopback(host) and (problem := short_key_problem(settings)):
        raise UsageError(problem)
    check_workers(args.workers)
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {port}")
    # The app is built by uvicorn from the environment: hand it the name this process serves as.
    replica = settings.replica_name(port)
    os.environ["PERCEPTION_LLM_REPLICA"] = replica
    check_port_free(host, port)
    for warning in unknown_variables(os.environ):
        say(settings, "warning", warning)
    say(settings, "info", startup_summary(settings, host, port, replica))
    raise_file_limit(settings.max_connections)
    restore = exit_cleanly_on_signals()
    try:
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            log_config=log_config(settings.log_level, settings.log_format, replica),
            access_log=settings.access_log,
            http="server.http.protocol:GuardedHttpProtocol",
            # The stdlib loop, not uvloop: under 300 concurrent streams uvloop left new
            # connections unaccepted for up to 1.7 s (/healthz, new calls), asyncio 0.03-0.19 s
            # (benchmarks/healthz_under_stream_load.py).
            loop="asyncio",
            timeout_keep_alive=5,
            # A backstop past our own drain, which ends streams at the grace period.
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
        )
    finally:
        restore()
    return 0


def check_workers(workers: int) -> None:
    """One process per replica (issue 26): with several workers the kernel hands each connection
    to any of them, so a conversation's overlapping requests land in different processes and
    "newest wins" and request sharing stop working (measured: benchmarks/newest_wins.py).
    Replicas behind the shipped nginx configuration use the cores and keep both."""
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if workers > 1:
        raise UsageError(
            f"--workers {workers} would split a conversation's requests between processes "
            "(newest wins and request sharing need one): run one replica per core behind "
            "deploy/nginx/perception-llm.conf instead (README: Deploying)"
        )


def check_capture_url(url: str) -> None:
    """A capture URL that cannot work (unknown scheme, no driver) stops start-up in one line; a
    database that is merely down is reported by the writer, and serving goes on."""
    from server.capture.store import CaptureStore, CaptureStoreError

    try:
        CaptureStore(url).dispose()
    except CaptureStoreError as error:
        raise UsageError(str(error)) from None


def raise_file_limit(connections: int) -> None:
    """Raise the soft open-file limit to the hard one, so `max_connections` sockets fit (the
    default soft limit, 1,024, let 1,100 idle connections fail every request)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, connections + 1024)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft < connections + 256:
        logging.getLogger(__name__).warning(
            "open-file limit %d is below PERCEPTION_LLM_MAX_CONNECTIONS (%d) plus headroom; "
            "raise it (LimitNOFILE= / --ulimit nofile=) or lower the setting",
            soft,
            connections,
        )


def check_port_free(host: str, port: int) -> None:
    """One clear line instead of uvicorn's six when the port is taken."""
    if port == 0:
        return
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError as error:
        raise UsageError(
            f"cannot listen on {host}:{port}: {error.strerror} (another server? pass --port)"
        ) from None
    finally:
        probe.close()


def unknown_variables(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """A warning for each PERCEPTION_LLM_* variable no setting reads (a typo is silent else)."""
    known = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]
    warnings = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            words = set(name.removeprefix(ENV_PREFIX).split("_"))
            # A variable with every word of the typo (UPSTREAM_URL -> UPSTREAM_BASE_URL) first.
            close = [k for k in known if words <= set(k.removeprefix(ENV_PREFIX).split("_"))]
            close = close or difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"{name} is not a setting and is ignored{hint}")
    return warnings


def startup_summary(settings: Settings, host: str, port: int, replica: str) -> str:
    """Who answers, whether a key is needed, the default template, the playground: one line,
    never a secret."""
    shown_port = port or "(a free port)"
    base = f"http://{host}:{shown_port}"
    if settings.upstream_base_url:
        model = settings.upstream_model or "the request's model"
        responder = f"upstream {settings.upstream_base_url} ({model})"
    else:
        responder = "the offline echo responder (no upstream configured)"
    key = "required" if settings.api_key else "not required (loopback only)"
    if settings.api_key is None and settings.allow_insecure:
        key = "not required (--insecure)"
    playground = f", playground {base}/playground" if settings.playground else ""
    capture = ""
    if settings.capture:
        from server.capture.store import safe_url

        capture = (
            f"; recording calls to {safe_url(settings.capture)} "
            f"(perception: {settings.capture_perception})"
        )
    return (
        f"serving {base}/v1 as replica {replica} with {responder}; API key {key}; "
        f"default template {settings.prompt}{playground}{capture}"
    )


def say(settings: Settings, level: str, message: str) -> None:
    """A start-up line on stderr, before logging is configured, in the configured log format."""
    if settings.log_format == "json":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        record = {"ts": stamp, "level": level, "logger": "perception_llm.serve", "message": message}
        print(json.dumps(record, ensure_ascii=False), file=sys.stderr)
    else:
        print(
            f"perception-llm: {'' if level == 'info' else level + ': '}{message}", file=sys.stderr
        )
