"""The HTTP edge: uvicorn's guarded protocol, connection shares, limits, auth, the body, the
Host check, disconnects, shutdown, and request-scoped observability."""
