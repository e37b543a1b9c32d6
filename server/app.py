"""`create_app(settings)`: the FastAPI application, wired in one place.

Resources (the responder) live on `app.state`, created in the lifespan; routes stay thin.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from prompts.templates import TemplateLibrary
from server.capture.store import CaptureStore
from server.capture.writer import CallCapture
from server.completion.control import ConversationRegistry
from server.errors import install_error_handlers
from server.http.connection_shares import ConnectionShares
from server.http.host_check import LoopbackHostMiddleware
from server.http.idle_collection import IdleCollector
from server.http.limits import BodyLimitMiddleware, ConcurrencyGate, LoopLagMonitor
from server.http.observability import RequestContextMiddleware
from server.http.shutdown import install_drain_on_signals
from server.metrics import Metrics
from server.redaction import RedactingFilter, Redactor
from server.responders.echo import EchoResponder
from server.responders.routing import ModelRouter
from server.routes import calls, chat, experiments, meta, perception, playground, prompts
from server.services import Services
from server.settings import Settings, is_loopback, load_settings
from server.upstream.client import UpstreamResponder


def capture_for(
    settings: Settings, metrics: Metrics, replica: str, redactor: Redactor
) -> CallCapture | None:
    """The call capture when `PERCEPTION_LLM_CAPTURE` is set (a bad URL stops start-up; a
    database that is down is the writer's to report, never the server's)."""
    if not settings.capture:
        return None
    return CallCapture(
        CaptureStore(settings.capture),
        metrics,
        redactor,
        perception=settings.capture_perception,
        queue_size=settings.capture_queue_size,
        max_age_seconds=settings.capture_max_age_days * 86400,
        max_calls=settings.capture_max_calls,
        replica=replica,
        max_bytes=settings.capture_max_megabytes * 1_000_000,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    # Loaded (and test-rendered) here, so a broken user template stops start-up with its name.
    templates = TemplateLibrary(settings.prompts_dir)
    templates.get(settings.prompt)
    for name, _ in settings.split:  # an A/B arm naming no template stops start-up, not a call
        templates.get(name)
    lag = LoopLagMonitor(settings.max_loop_lag_seconds)
    gate = ConcurrencyGate(settings.max_concurrent_streams, lag)
    replica = settings.replica_name(settings.port)
    metrics = Metrics(active_streams=lambda: gate.active, replica=replica)
    # The one redactor: every secret configured now, and any registered later with `add`.
    redactor = Redactor(settings.secrets())
    upstream = (
        UpstreamResponder(settings, redactor, on_error=metrics.upstream_errors_by_kind)
        if settings.upstream_base_url
        else None
    )
    app_services = Services(
        settings=settings,
        templates=templates,
        metrics=metrics,
        gate=gate,
        lag=lag,
        conversations=ConversationRegistry(),
        responder=ModelRouter(
            EchoResponder(settings.echo_model, settings.echo_word_delay_ms), upstream
        ),
        prepare_limiter=anyio.CapacityLimiter(1),
        started_at=int(time.time()),
        replica=replica,
        redactor=redactor,
        capture=capture_for(settings, metrics, replica, redactor),
        connection_shares=ConnectionShares(settings.trusted_proxies),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app_services.loop = asyncio.get_running_loop()
        await app_services.responder.start()  # the upstream's HTTP session binds to this loop
        install_drain_on_signals(app_services.conversations, settings.shutdown_grace_seconds)
        redacting = RedactingFilter(redactor)
        handlers = logging.getLogger().handlers + logging.getLogger("uvicorn").handlers
        for handler in handlers:  # a second line of defence: sources redact already
            handler.addFilter(redacting)
        lag.start()
        # What exists now (modules, templates, settings) lives as long as the process: out of
        # the cyclic collector's way. A full collection walks every tracked object holding the
        # GIL; with these in it, one during a 4 MB parse held the loop ~130 ms (issue 23).
        gc.freeze()
        # What is cached after this (the perception caches) is walked by full collections:
        # they run between completions instead of inside one (issue 24's tail).
        collector = IdleCollector(busy=lambda: gate.active > 0)
        collector.start()
        app.state.idle_collector = collector
        if app_services.capture is not None:
            app_services.capture.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            lag.stop()
            collector.stop()
            if app_services.capture is not None:
                # Writes what is queued, within the grace period (counted and logged beyond).
                await asyncio.to_thread(
                    app_services.capture.stop, max(settings.shutdown_grace_seconds, 1.0)
                )
            await app_services.responder.aclose()  # closes the pooled upstream connections
            for handler in handlers:
                handler.removeFilter(redacting)

    # With a key set, the schema and the docs pages would be readable without it (and the pages
    # load Swagger from a CDN): they are served only by a keyless, loopback-only server.
    docs = settings.api_key is None
    app = FastAPI(
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        title="perception-llm",
        summary="OpenAI-compatible custom LLM for Tavus personas, with perception parsing.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.services = app_services
    install_error_handlers(app)
    app.include_router(chat.router)
    app.include_router(meta.router)
    app.include_router(perception.router)
    app.include_router(prompts.router)
    app.include_router(calls.router)
    app.include_router(experiments.router)
    if settings.playground:
        app.include_router(playground.router)
        app.include_router(playground.api)
        app.mount("/playground/static", playground.static_files(), name="playground-static")
    # Plain ASGI middleware only (BaseHTTPMiddleware hides client disconnects). The last one
    # added is the outermost: request ids wrap everything, so even a 413 carries one.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["x-request-id"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    # `--insecure` allows a public interface without a key; on loopback it changes nothing (it
    # used to switch this check off there too, review of issue 23).
    if settings.api_key is None and (not settings.allow_insecure or is_loopback(settings.host)):
        app.add_middleware(LoopbackHostMiddleware, allowed_hosts=settings.allowed_hosts)
    return app
