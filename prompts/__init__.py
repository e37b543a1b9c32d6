"""Render a parsed conversation into the messages the response model receives (issue 4).

For now this package holds the token estimate shared by the server and the templates.
"""

from prompts.tokens import estimate_message_tokens, estimate_tokens

__all__ = ["estimate_message_tokens", "estimate_tokens"]
