"""siopg: a Socket.IO v4 server for Python (aiohttp + uvloop), scaling across processes with PostgreSQL."""

from __future__ import annotations

from typing import Any

import siopg.metrics  # noqa: F401  (registers io.metrics_registry and /metrics: see server/extensions)
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
from siopg.server.extensions import EXTENSIONS as _EXTENSIONS

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


def _setup_dashboard(io: Server, app: Any) -> None:
    """`io.aiohttp_app(dashboard=True)`: siopg.dashboard (jinja2) loads on first use only."""
    from siopg.dashboard import setup

    setup(io, app)


_EXTENSIONS.dashboard_setup = _setup_dashboard


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
