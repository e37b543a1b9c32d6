"""perception-llm's own counters, read from the `/metrics` next to an endpoint's base URL.

aiohttp (a core dependency), not httpx: httpx comes only with the test extra, and the README's
install must run every command (issue 21).
"""

from __future__ import annotations

import aiohttp


async def upstream_calls_saved(
    url: str, api_key: str | None, conversation_id: str | None = None
) -> float | None:
    """How many upstream calls sharing identical requests has saved so far; None for endpoints
    that are not perception-llm (no `/metrics`, or none of ours). With `conversation_id` the
    request carries it, so a balancer hashing on it asks the replica that served it."""
    base = url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if conversation_id:
        headers["conversation-id"] = conversation_id
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, headers=headers) as session,
            session.get(base + "/metrics") as response,
        ):
            status, text = response.status, await response.text()
    except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
        return None  # any endpoint: no metrics is a normal answer
    for line in text.splitlines() if status == 200 else ():
        if line.startswith("perception_llm_upstream_calls_saved_total "):
            return float(line.split()[1])
    return None
