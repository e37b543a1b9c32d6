"""The live-server helper now lives in the package (`server.inprocess`); kept for imports."""

from server.inprocess import LiveServer, listening_socket, live_server, running_server

__all__ = ["LiveServer", "listening_socket", "live_server", "running_server"]
