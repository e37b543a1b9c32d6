"""The OpenAI-compatible response model we relay: its HTTP client, its streamed chunks and
events, how its failures are classified, and its model list."""
