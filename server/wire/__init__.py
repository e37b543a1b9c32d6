"""The OpenAI wire format, pure where it can be: request schemas, chunk encoding, SSE framing and
decoding, and the streamed response on the socket."""
