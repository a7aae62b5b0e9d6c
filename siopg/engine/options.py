"""EngineOptions: every knob of the Engine.IO server, with engine.io's defaults."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .request import RequestInfo

AllowRequest = Callable[[RequestInfo], Awaitable[None] | None]

TRANSPORTS = ("polling", "websocket")


def default_sid() -> str:
    """20 random URL-safe base64 characters (120 bits)."""
    return secrets.token_urlsafe(15)


@dataclass(slots=True)
class EngineOptions:
    path: str = "/socket.io/"
    ping_interval: float = 25.0          # seconds
    ping_timeout: float = 20.0
    upgrade_timeout: float = 10.0
    max_http_buffer_size: int = 1_000_000
    transports: Sequence[str] = ("polling", "websocket")
    allow_request: AllowRequest | None = None   # raise to refuse (-> 403 {"code":4})
    cors_allowed_origins: str | Sequence[str] | None = None   # None: no CORS headers
    cors_credentials: bool = False
    cookie: dict[str, Any] | str | bool | None = None
    http_compression: bool = False
    per_message_deflate: bool = False
    max_buffer_size: int = 8 * 1024 * 1024
    # Seconds a polling POST may take to send its body (None: no limit). Past it, or when
    # its session closes meanwhile, the client gets a 400 and the connection is closed.
    http_body_timeout: float | None = 20.0
    # Seconds a connection's queued frames may wait for more before they are written (0: the
    # next loop iteration). Trades that much latency for fewer write() calls under steady load.
    write_coalesce: float = 0.0
    sid_generator: Callable[[], str] = field(default=default_sid)

    def __post_init__(self) -> None:
        self.transports = tuple(self.transports)
        unknown = [t for t in self.transports if t not in TRANSPORTS]
        if unknown or not self.transports:
            raise ValueError(f"transports must be a non-empty subset of {TRANSPORTS}, got {unknown}")
        if self.cors_allowed_origins == "*" and self.cors_credentials:
            # Browsers refuse "*" with credentials; echoing every Origin instead would let any
            # site make credentialed requests as the user.
            raise ValueError(
                'cors_allowed_origins="*" cannot be combined with cors_credentials=True: '
                "list the allowed origins instead"
            )
        if isinstance(self.cors_allowed_origins, str) and self.cors_allowed_origins != "*":
            self.cors_allowed_origins = (self.cors_allowed_origins,)
        if self.http_body_timeout is not None and not self.http_body_timeout > 0:
            raise ValueError(f"http_body_timeout must be > 0 or None, got {self.http_body_timeout!r}")
        if not 0 <= self.write_coalesce <= 1:
            raise ValueError(f"write_coalesce must be between 0 and 1 second, got {self.write_coalesce!r}")
        if not self.path.endswith("/"):
            self.path += "/"
        if not self.path.startswith("/"):
            self.path = "/" + self.path

    def cookie_header(self, sid: str) -> str | None:
        """The Set-Cookie value for a handshake (engine.io's defaults: io, /, HttpOnly, Lax)."""
        cookie = self.cookie
        if not cookie:
            return None
        opts: dict[str, Any] = {"name": "io", "path": "/", "httponly": True, "samesite": "Lax"}
        if isinstance(cookie, str):
            opts["name"] = cookie
        elif isinstance(cookie, dict):
            opts.update({k.lower().replace("_", ""): v for k, v in cookie.items()})
        parts = [f"{opts['name']}={sid}"]
        if opts.get("maxage") is not None:
            parts.append(f"Max-Age={int(opts['maxage'])}")
        if opts.get("domain"):
            parts.append(f"Domain={opts['domain']}")
        if opts.get("path"):
            parts.append(f"Path={opts['path']}")
        if opts.get("httponly"):
            parts.append("HttpOnly")
        if opts.get("secure"):
            parts.append("Secure")
        samesite = opts.get("samesite")
        if samesite:
            samesite = "Strict" if samesite is True else str(samesite).capitalize()
            parts.append(f"SameSite={samesite}")
        return "; ".join(parts)
