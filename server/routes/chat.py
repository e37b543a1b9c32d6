"""`POST /v1/chat/completions` (and `/chat/completions`, since Tavus appends the route to
whatever `base_url` a persona has)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from server.completion.fallback_marker import fallback_headers
from server.completion.lifecycle import Completion
from server.completion.streaming import collect_completion, prefetched, stream_chunks, with_fallback
from server.errors import APIError
from server.http.auth import require_api_key
from server.http.body import require_json_content_type
from server.http.disconnect import until_disconnected
from server.responders.base import ResponseEvent
from server.services import services
from server.settings import Settings
from server.wire.schemas import REQUEST_BODY_SCHEMA
from server.wire.sse_response import SSEResponse

# Auth is called directly, not as a dependency: FastAPI's dependency solving cost ~0.1 ms of
# time to first token on this route (benchmarks/relay_latency.py); the other routes keep it.
logger = logging.getLogger(__name__)
router = APIRouter()
CHAT_PATHS = (
    "/v1/chat/completions",
    "/chat/completions",
)  # also served by server/http/fast_path.py


def completion_stream(
    completion: Completion, events: AsyncIterator[ResponseEvent], settings: Settings
) -> SSEResponse:
    response: SSEResponse

    def stop_keepalives() -> None:
        response.stop_keepalives()  # [DONE] must be the last frame

    response = SSEResponse(
        stream_chunks(
            events,
            completion.encoder,
            completion.job.request.include_usage,
            completion.record,
            completion.finish,
            stop_keepalives,
        ),
        keepalive=settings.keepalive_seconds,
        send_timeout=settings.send_timeout_seconds,
        on_close=completion.finish,
        late_headers=lambda: fallback_headers(completion.record.fallback),
    )
    return response


async def chat_completions(request: Request) -> Response:
    app = services(request)
    require_api_key(request, app.settings)
    require_json_content_type(request)
    completion, prepared = await Completion.begin(app, request)
    events = completion.start()
    # One turn of the loop lets the upstream request go out (its task runs up to the socket
    # write) before our own response setup: connecting and sending overlap with it.
    await asyncio.sleep(0)
    stream = prepared.completion_request.stream
    if stream and app.settings.fallback_text:
        # Start streaming at once: keep-alives flow while the upstream thinks, and a failure
        # before the first token becomes the spoken fallback line instead of silence.
        events = with_fallback(events, app.settings.fallback_text, completion.record)
    events = completion.with_emotion_tag(events)
    if not stream:
        try:
            reply = collect_completion(
                events, completion.encoder, completion.record, app.settings.max_reply_chars
            )
            return JSONResponse(await until_disconnected(request, reply))
        finally:
            completion.finish()
    if not app.settings.fallback_text:
        try:
            events = await until_disconnected(request, prefetched(events))
        except BaseException as error:  # answered with an HTTP error: log it as what it was
            completion.record.ended_by(
                error, error.message if isinstance(error, APIError) else None
            )
            completion.finish()
            raise
    return completion_stream(completion, events, app.settings)


for path in CHAT_PATHS:
    router.add_api_route(
        path,
        chat_completions,
        methods=["POST"],
        openapi_extra=REQUEST_BODY_SCHEMA,
        include_in_schema=path.startswith("/v1"),
        summary="Create a chat completion (OpenAI-compatible, streams over SSE)",
    )
