"""Which responder answers: `echo` when asked for by name, otherwise the upstream if configured.

Keeping `echo` reachable beside a real model lets anyone check what perception a persona gets
(`model: "echo"`) on the same deployment, without touching its configuration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from server.responders.base import CompletionJob, Responder, ResponseEvent
from server.responders.echo import EchoResponder
from server.upstream.client import UpstreamResponder


class ModelRouter:
    def __init__(self, echo: EchoResponder, upstream: UpstreamResponder | None) -> None:
        self.echo = echo
        self.upstream = upstream
        self._probe: asyncio.Task[None] | None = None

    def pick(self, job: CompletionJob) -> Responder:
        if self.upstream is None or job.request.model == self.echo.model:
            return self.echo
        return self.upstream

    def model_for(self, job: CompletionJob) -> str:
        return self.pick(job).model_for(job)

    def stream(self, job: CompletionJob) -> AsyncIterator[ResponseEvent]:
        return self.pick(job).stream(job)

    def served_models(self) -> list[str]:
        upstream = self.upstream.served_models() if self.upstream else []
        return list(dict.fromkeys([*upstream, *self.echo.served_models()]))  # each name once

    async def start(self) -> None:
        if self.upstream is not None:
            await self.upstream.start()
            if self.upstream.settings.upstream_check:
                self._probe = asyncio.ensure_future(self.upstream.probe())  # in the background

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self.upstream is not None:
            await self.upstream.aclose()
