"""`perception-llm serve` with one hand-written part swapped for the stock one, for the
stock-vs-hand-written comparison in benchmarks/relay_latency.py (`--variants`; issue 24).

    python benchmarks/stock_variants.py stock-sse serve --port 0   # sse-starlette's response
    python benchmarks/stock_variants.py framework serve --port 0   # FastAPI's routing stack

Benchmark-only: the swap is made in this process before uvicorn builds the app.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent


def _stock_sse() -> None:
    import server.routes.chat as chat

    def completion_stream(completion: Any, events: AsyncIterator[Any], settings: Any) -> Any:
        response: EventSourceResponse

        def stop_pings() -> None:
            response.active = False  # sse-starlette pings only while active

        response = EventSourceResponse(
            chat.stream_chunks(
                events,
                completion.encoder,
                completion.job.request.include_usage,
                completion.record,
                completion.finish,
                stop_pings,
            ),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            sep="\n",
            ping=settings.keepalive_seconds,
            ping_message_factory=lambda: ServerSentEvent(comment="keep-alive", sep="\n"),
            send_timeout=settings.send_timeout_seconds,
        )
        return response

    chat.completion_stream = completion_stream  # type: ignore[assignment]


def _framework() -> None:
    import server.app as app_module

    create_app = app_module.create_app

    def without_fast_path(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.fast_chat = None  # type: ignore[attr-defined]
        return app

    app_module.create_app = without_fast_path


def main() -> None:
    variant = sys.argv.pop(1)
    {"stock-sse": _stock_sse, "framework": _framework}[variant]()
    from server.cli import main as cli

    sys.exit(cli())


if __name__ == "__main__":
    main()
