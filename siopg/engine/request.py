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


# Every idle connection keeps its handshake's headers for socket.handshake: a fresh
# lower-cased copy of each name would cost ~50 bytes per header per connection, so the
# lower-cased names are shared. Bounded: names past the limit are lower-cased as usual.
_NAME_CACHE_LIMIT = 512
_names: dict[str | bytes, str] = {}


def header_name(raw: str | bytes) -> str:
    """`raw` lower-cased (bytes decoded as latin-1), one shared str per distinct name."""
    name = _names.get(raw)
    if name is None:
        name = (raw.decode("latin-1") if isinstance(raw, bytes) else raw).lower()
        if len(_names) < _NAME_CACHE_LIMIT:
            _names[raw] = name
    return name
