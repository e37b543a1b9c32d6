"""Tavus' side of a call, emulated: `perception-llm simulate` and `perception-llm compare`."""
