"""What the app is made of, in one typed object: `create_app` builds it, requests read it.

One `Services` per app, on `app.state.services`, read through `services(request)`; nothing else
is stored on `app.state`, so what exists, and its type, is written in one place.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import anyio

from prompts.templates import TemplateLibrary
from server.capture.writer import CallCapture
from server.completion.control import ConversationRegistry
from server.completion.sharing import SharedGenerations
from server.http.connection_shares import CapReport, ConnectionShares
from server.http.limits import ConcurrencyGate, LoopLagMonitor
from server.metrics import Metrics
from server.redaction import Redactor
from server.responders.routing import ModelRouter
from server.settings import Settings


@dataclass
class Services:
    settings: Settings
    templates: TemplateLibrary
    metrics: Metrics
    gate: ConcurrencyGate
    lag: LoopLagMonitor
    conversations: ConversationRegistry
    responder: ModelRouter
    # One thread prepares large bodies: with the GIL, more threads only make the event loop
    # wait longer for its turn (8 gave /healthz a p99 of 460 ms under 4 MB bodies, 1: 34 ms).
    prepare_limiter: anyio.CapacityLimiter
    started_at: int
    replica: str  # this process's name in logs, metrics and captured calls
    # The one redactor (capture, upstream errors, replies, logs); `redactor.add` a secret learnt
    # at run time and every one of them redacts it.
    redactor: Redactor
    shared: SharedGenerations = field(default_factory=SharedGenerations)
    # Connections without a complete request, by client (read by server/http/protocol.py).
    connection_shares: ConnectionShares[Any] = field(default_factory=ConnectionShares)
    connection_report: CapReport = field(default_factory=CapReport)
    capture: CallCapture | None = None  # recording calls (PERCEPTION_LLM_CAPTURE), when on
    loop: asyncio.AbstractEventLoop | None = None  # set while serving (diagnostics, tests)


def services(holder: Any) -> Services:
    """The app's services, from the app itself or from a request (anything with `.app`)."""
    app = holder.app if hasattr(holder, "scope") else holder
    return cast(Services, app.state.services)
