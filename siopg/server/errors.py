"""Errors the user API raises or accepts."""

from __future__ import annotations

from typing import Any

from siopg.adapter.errors import AckTimeoutError
from siopg.errors import SiopgError

__all__ = ["AckTimeoutError", "ConnectError", "TooManyNamespaces"]



class ConnectError(SiopgError):
    """Refuse a namespace connection from a middleware.

    The client receives a CONNECT_ERROR packet `{"message": message, "data": data}` (its
    `connect_error` event); raise it or pass it to `next_()`.
    """

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class TooManyNamespaces(SiopgError):
    """A client's CONNECT would create a dynamic namespace past `max_dynamic_namespaces`.

    `name` is the namespace the client asked for (client input: clip it before logging).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

