"""Typed handshake/request errors with the HTTP status and JSON body engine.io answers."""

from __future__ import annotations

import json

from .._log import clip
from ..errors import SiopgError


class EngineError(SiopgError):
    """A refused HTTP request. `code` and `message` form engine.io's JSON error body."""

    code: int = 3
    default_message: str = "Bad request"
    status: int = 400

    def __init__(self, message: str | None = None, *, context: str | None = None) -> None:
        self.message = message or self.default_message
        # why, for logs only (never sent to the client); may quote client input, so clipped
        self.context = context = None if context is None else clip(context)
        super().__init__(self.message if context is None else f"{self.message} ({context})")

    def body(self) -> bytes:
        return json.dumps({"code": self.code, "message": self.message}).encode()


class UnknownTransport(EngineError):
    code, default_message = 0, "Transport unknown"


class UnknownSessionId(EngineError):
    code, default_message = 1, "Session ID unknown"


class BadHandshakeMethod(EngineError):
    code, default_message = 2, "Bad handshake method"


class BadRequest(EngineError):
    code, default_message = 3, "Bad request"


class Forbidden(EngineError):
    code, default_message, status = 4, "Forbidden", 403


class UnsupportedProtocolVersion(EngineError):
    code, default_message = 5, "Unsupported protocol version"


class PayloadTooLarge(EngineError):
    """A polling POST above max_http_buffer_size (engine.io answers a bare 413)."""

    code, default_message, status = 3, "Payload too large", 413
