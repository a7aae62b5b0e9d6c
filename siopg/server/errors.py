"""Errors the user API raises or accepts."""

from __future__ import annotations

from typing import Any


class ConnectError(Exception):
    """Refuse a namespace connection from a middleware.

    The client receives a CONNECT_ERROR packet `{"message": message, "data": data}` (its
    `connect_error` event); raise it or pass it to `next_()`.
    """

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class AckTimeoutError(TimeoutError):
    """An acknowledgement did not arrive in time.

    `responses` holds the answers that did arrive (broadcast acks), so a caller can still use a
    partial result.
    """

    def __init__(self, message: str = "operation has timed out", responses: list[Any] | None = None) -> None:
        super().__init__(message)
        self.responses: list[Any] = responses if responses is not None else []


class TooManyNamespaces(Exception):
    """A client's CONNECT would create a dynamic namespace past `max_dynamic_namespaces`."""
