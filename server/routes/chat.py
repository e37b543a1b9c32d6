"""`POST /v1/chat/completions` (and `/chat/completions`, since Tavus appends the route to
whatever `base_url` a persona has)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.auth import require_api_key
from server.body import require_json_content_type
from server.disconnect import until_disconnected
from server.lifecycle import Completion
from server.responders import ResponseEvent
from server.schemas import REQUEST_BODY_SCHEMA
from server.services import services
from server.settings import Settings
from server.streaming import collect_completion, prefetched, stream_chunks, with_fallback

# Auth is called directly, not as a dependency: FastAPI's dependency solving cost ~0.1 ms of
# time to first token on this route (benchmarks/relay_latency.py); the other routes keep it.
logger = logging.getLogger(__name__)
router = APIRouter()

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class CompletionStream(EventSourceResponse):
    """sse-starlette's response, plus a cleanup that runs however the response ends."""

    def __init__(self, *args: Any, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_close = on_close

    @classmethod
    def for_completion(
        cls, completion: Completion, events: AsyncIterator[ResponseEvent], settings: Settings
    ) -> CompletionStream:
        response: CompletionStream

        def stop_pings() -> None:
            # sse-starlette's ping task sends only while `active`; [DONE] must be the last frame.
            response.active = False

        response = cls(
            stream_chunks(
                events,
                completion.encoder,
                completion.job.request.include_usage,
                completion.record,
                completion.finish,
                stop_pings,
            ),
            on_close=completion.finish,
            headers=SSE_HEADERS,
            sep="\n",
            ping=settings.keepalive_seconds,
            ping_message_factory=_keepalive,
            send_timeout=settings.send_timeout_seconds,
        )
        return response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            # The client stopped reading: drop it (uvicorn closes a response left unfinished).
            logger.warning("client stopped reading for %ss; closing its stream", self.send_timeout)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()  # stops the upstream read at once, however the send ended
            self.on_close()


def _keepalive() -> ServerSentEvent:
    return ServerSentEvent(comment="keep-alive", sep="\n")


async def chat_completions(request: Request) -> Response:
    app = services(request)
    require_api_key(request, app.settings)
    require_json_content_type(request)
    completion, prepared = await Completion.begin(app, request)
    events = completion.start()  # the upstream request starts now, while we set up the response
    stream = prepared.completion_request.stream
    if stream and app.settings.fallback_text:
        # Start streaming at once: keep-alives flow while the upstream thinks, and a failure
        # before the first token becomes the spoken fallback line instead of silence.
        events = with_fallback(events, app.settings.fallback_text, completion.record)
    events = completion.with_emotion_tag(events)
    if not stream:
        try:
            reply = collect_completion(events, completion.encoder, completion.record)
            return JSONResponse(await until_disconnected(request, reply))
        finally:
            completion.finish()
    if not app.settings.fallback_text:
        try:
            events = await until_disconnected(request, prefetched(events))
        except BaseException:
            completion.finish()
            raise
    return CompletionStream.for_completion(completion, events, app.settings)


for path in ("/v1/chat/completions", "/chat/completions"):
    router.add_api_route(
        path,
        chat_completions,
        methods=["POST"],
        openapi_extra=REQUEST_BODY_SCHEMA,
        include_in_schema=path.startswith("/v1"),
        summary="Create a chat completion (OpenAI-compatible, streams over SSE)",
    )
