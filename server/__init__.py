"""perception-llm's HTTP side: settings, the OpenAI-compatible app, SSE streaming and responders.

This is the only package that knows about HTTP, SSE, settings and response models; `perception`
and `prompts` stay pure: no I/O, no web framework.
"""
