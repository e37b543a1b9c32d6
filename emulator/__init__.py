"""Tavus' side of a call, emulated against any endpoint: `perception-llm simulate` and `compare`.

An HTTP *client* package: it speaks to a server over the wire like Tavus does. The server app
never imports it (a test checks); it may start the app in-process when no `--url` is given.
"""
