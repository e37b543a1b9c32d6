"""`perception-llm serve`: uvicorn with our protocol, settings checked first."""

from __future__ import annotations

import argparse
import logging
import os

from server.commands.common import UsageError, settings_or_error, templates_or_error
from server.observability import log_config
from server.settings import is_loopback
from server.shutdown import exit_cleanly_on_signals


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = settings_or_error()
    templates_or_error(settings)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    if args.insecure:
        settings = settings.model_copy(update={"allow_insecure": True})
    if settings.api_key is None and not settings.allow_insecure and not is_loopback(host):
        raise UsageError(
            f"refusing to serve {host} without an API key: set PERCEPTION_LLM_API_KEY, "
            "or pass --insecure to serve it unauthenticated"
        )
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    raise_file_limit(settings.max_connections)
    restore = exit_cleanly_on_signals()
    try:
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            log_level=settings.log_level.lower(),
            log_config=log_config(settings.log_level, settings.log_format),
            access_log=settings.access_log,
            http="server.protocol:GuardedHttpProtocol",
            # The stdlib loop, not uvloop: under 300 concurrent streams uvloop left new
            # connections unaccepted for up to 1.7 s (/healthz, new calls), asyncio 0.03-0.19 s
            # (benchmarks/healthz_under_stream_load.py).
            loop=os.environ.get("PLLM_LOOP", "asyncio"),
            timeout_keep_alive=5,
            # A backstop past our own drain, which ends streams at the grace period.
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
        )
    finally:
        restore()
    return 0


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
