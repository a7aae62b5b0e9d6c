"""siopg: a Socket.IO v4 server for Python (aiohttp + uvloop), scaling across processes with PostgreSQL."""

from __future__ import annotations

from typing import Any

from siopg.adapter.memory import InMemoryAdapter
from siopg.errors import SiopgError
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
    "SiopgError",
    "Socket",
]

__version__ = "0.1.0"

_LAZY = {"PostgresAdapter", "Emitter"}


def __getattr__(name: str) -> Any:
    """PostgresAdapter and Emitter load on first use, so `import siopg` never needs asyncpg."""
    if name in _LAZY:
        from siopg.adapter import postgres

        value = getattr(postgres, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'siopg' has no attribute {name!r}")
