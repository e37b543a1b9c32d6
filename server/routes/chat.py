"""`POST /v1/chat/completions` (and `/chat/completions`, since Tavus appends the route to
whatever `base_url` a persona has)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from perception import Conversation, parse_messages
from prompts.render import RenderedPrompt
from server.auth import require_api_key
from server.body import decode_json_object, require_json_content_type, validate_body
from server.chunks import ChunkEncoder
from server.control import ConversationRegistry
from server.disconnect import until_disconnected
from server.errors import InvalidRequestError
from server.limits import ConcurrencyGate, check_request_limits
from server.metrics import Metrics
from server.observability import CONVERSATION_ID, log_safe
from server.prompting import render_for_request
from server.request_log import CompletionRecord
from server.responders import CompletionJob, Responder
from server.schemas import REQUEST_BODY_SCHEMA, ChatCompletionRequest
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


@dataclass(frozen=True)
class PreparedRequest:
    body: dict[str, Any]
    completion_request: ChatCompletionRequest
    conversation: Conversation
    rendered: RenderedPrompt


def prepare_request(raw: bytes, request: Request, settings: Settings) -> PreparedRequest:
    """Decode, validate, parse and render: all the CPU work a request needs before the model."""
    body = decode_json_object(raw)
    completion_request = validate_body(ChatCompletionRequest, body)
    if completion_request.n is not None and completion_request.n != 1:
        raise InvalidRequestError("Only n=1 is supported.", param="n")
    check_request_limits(completion_request, body, settings)
    conversation = parse_messages(
        body["messages"], max_field_chars=settings.perception_max_field_chars
    )
    rendered = render_for_request(body, request, conversation)
    return PreparedRequest(body, completion_request, conversation, rendered)


# Bodies above this are prepared in a worker thread: a 4 MB body takes ~0.2 s of CPU, which on
# the event loop would stall every other stream and /healthz. Below it the thread hop (~0.1 ms)
# costs more than the work, and small bodies are what Tavus sends.
OFF_LOOP_BODY_BYTES = 256 * 1024


async def chat_completions(request: Request) -> Response:
    settings: Settings = services(request).settings
    require_api_key(request, settings)
    require_json_content_type(request)
    raw = await request.body()
    gate: ConcurrencyGate = services(request).gate
    # The slot is taken before the work, so a flood of large bodies is refused with 429 instead of
    # queueing CPU work; from here on `finished` (or the except below) must run exactly once.
    gate.enter()
    try:
        if len(raw) > OFF_LOOP_BODY_BYTES:
            prepared = await anyio.to_thread.run_sync(
                prepare_request, raw, request, settings, limiter=services(request).prepare_limiter
            )
        else:
            prepared = prepare_request(raw, request, settings)
    except BaseException:
        gate.leave()
        raise
    body, completion_request = prepared.body, prepared.completion_request
    conversation, rendered = prepared.conversation, prepared.rendered
    registry: ConversationRegistry = services(request).conversations
    control = registry.start(request.headers)
    job = CompletionJob(
        request=completion_request,
        body=body,
        conversation=conversation,
        prompt_messages=rendered.messages,
        control=control,
    )
    responder: Responder = services(request).responder
    encoder = ChunkEncoder(model=responder.model_for(job))
    CONVERSATION_ID.set(log_safe(control.conversation_id))
    record = CompletionRecord(
        request_id=request.state.request_id,
        conversation_id=control.conversation_id,
        model=encoder.model,
        template=rendered.template,
        stream=completion_request.stream,
        prompt_tokens=rendered.prompt_tokens,
    )
    metrics: Metrics = services(request).metrics

    done = False

    def finished() -> None:
        # Idempotent: called when the stream ends and again when the response object ends,
        # because a stream whose client left before it was first iterated never runs its own
        # cleanup (an unstarted async generator skips its `finally`).
        nonlocal done
        if not done:
            done = True
            gate.leave()
            registry.finish(control)
            record.finish(metrics)

    events = responder.stream(job)
    if not completion_request.stream:
        try:
            return JSONResponse(
                await until_disconnected(request, collect_completion(events, encoder, record))
            )
        finally:
            finished()
    if settings.fallback_text:
        # Start streaming at once: keep-alives flow while the upstream thinks, and a failure
        # before the first token becomes the spoken fallback line instead of silence.
        events = with_fallback(events, settings.fallback_text, record)
    else:
        try:
            events = await until_disconnected(request, prefetched(events))
        except BaseException:
            finished()
            raise

    def stop_pings() -> None:
        # sse-starlette's ping task sends only while `active`; [DONE] must be the last frame.
        response.active = False

    response = CompletionStream(
        stream_chunks(
            events, encoder, completion_request.include_usage, record, finished, stop_pings
        ),
        on_close=finished,
        headers=SSE_HEADERS,
        sep="\n",
        ping=settings.keepalive_seconds,
        ping_message_factory=_keepalive,
        send_timeout=settings.send_timeout_seconds,
    )
    return response


for path in ("/v1/chat/completions", "/chat/completions"):
    router.add_api_route(
        path,
        chat_completions,
        methods=["POST"],
        openapi_extra=REQUEST_BODY_SCHEMA,
        include_in_schema=path.startswith("/v1"),
        summary="Create a chat completion (OpenAI-compatible, streams over SSE)",
    )
