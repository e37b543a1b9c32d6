"""The live-server helper now lives in the package (`server.inprocess`); kept for imports."""

from server.inprocess import listening_socket, running_server

__all__ = ["listening_socket", "running_server"]
