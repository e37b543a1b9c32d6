"""The mark our own tools put on their requests (issue 25): `simulate`, `compare` and `eval` send
`X-Perception-LLM-Tool: NAME`; the capture stores it (`captured_calls.tool`) so experiments
replaying real conversations and the A/B statistics leave test traffic out."""

from __future__ import annotations

from collections.abc import Mapping

TOOL_HEADER = "x-perception-llm-tool"


def tool_mark(headers: Mapping[str, str]) -> str | None:
    """Which of our tools sent the request (`eval`, `compare`, `simulate`), or None."""
    value = next((v for k, v in headers.items() if k.lower() == TOOL_HEADER), None)
    return value[:32] if value else None
