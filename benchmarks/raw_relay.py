"""The floor for a Python relay: copy the request to the upstream and its bytes back, nothing else.

`python benchmarks/raw_relay.py UPSTREAM_BASE_URL` serves POST /v1/chat/completions on a free
loopback port (printed as "raw relay on http://127.0.0.1:PORT/v1") with aiohttp on both sides and
one pooled upstream session: no parsing, no validation, no prompt. perception-llm's added latency
is quoted against this, in the same run (benchmarks/relay_latency.py).
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from aiohttp import web


async def main(upstream: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        for attempt in (1, 2):  # a pooled connection the upstream closed: retry once, as any relay
            try:
                answer = await session.post(
                    upstream + "/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
                )
                break
            except aiohttp.ClientConnectionError:
                if attempt == 2:
                    raise
        async with answer:
            response = web.StreamResponse(
                status=answer.status, headers={"Content-Type": "text/event-stream"}
            )
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"raw relay on http://127.0.0.1:{port}/v1", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
