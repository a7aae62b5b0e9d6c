"""RequestInfo: what the upper layers may know about the handshake request."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestInfo:
    headers: dict[str, str]            # lower-cased names
    query: dict[str, str]
    remote_address: str | None
    url: str                           # path and query string, as requested
    secure: bool
    issued: int                        # ms since the epoch
    method: str = field(default="GET")
