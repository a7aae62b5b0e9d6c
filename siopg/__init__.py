"""siopg: a Socket.IO v4 server for Python (aiohttp + uvloop), scaling across processes with PostgreSQL."""

from __future__ import annotations

from typing import Any

from siopg.adapter.memory import InMemoryAdapter
from siopg.server import (
    AckTimeoutError,
    BroadcastOperator,
    ConnectError,
    Namespace,
    Recovery,
    RemoteSocket,
    Server,
    Socket,
)

__all__ = [
    "AckTimeoutError",
    "BroadcastOperator",
    "ConnectError",
    "Emitter",
    "InMemoryAdapter",
    "Namespace",
    "PostgresAdapter",
    "Recovery",
    "RemoteSocket",
    "Server",
    "Socket",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """PostgresAdapter and Emitter load on first use, so `import siopg` never needs asyncpg."""
    value: Any
    if name == "PostgresAdapter":
        from siopg.adapter.postgres import PostgresAdapter as value
    elif name == "Emitter":
        from siopg.emitter import Emitter as value
    else:
        raise AttributeError(f"module 'siopg' has no attribute {name!r}")
    globals()[name] = value
    return value
