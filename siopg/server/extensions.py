"""Where the layers above the server plug into its conveniences, so it never imports them.

`io.aiohttp_app(metrics=True, dashboard=True)`, `io.attach(app, metrics=True)`,
`io.metrics_registry` and `io.metrics_handler()` are served by siopg.metrics and
siopg.dashboard, which sit above the server in the layer order (dependencies point down).
They register their entry points here: siopg.metrics when it is imported, the dashboard
through `siopg/__init__.py` (loaded on first use). `import siopg` does both, and importing
any siopg module imports `siopg` first, so a server always finds them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Extensions:
    """The entry points of the layers above the server (None until registered)."""

    #: server -> its Prometheus registry (siopg.metrics.make_registry)
    metrics_registry: Callable[[Any], Any] | None = None
    #: (server, aiohttp app) -> None: mount GET /metrics (siopg.metrics.setup)
    metrics_setup: Callable[[Any, Any], None] | None = None
    #: (server, aiohttp request) -> response (siopg.metrics.aiohttp_handler)
    metrics_handler: Callable[[Any, Any], Awaitable[Any]] | None = None
    #: (server, aiohttp app) -> None: mount /dashboard without auth (siopg.dashboard.setup)
    dashboard_setup: Callable[[Any, Any], None] | None = None

    def require(self, name: str) -> Callable[..., Any]:
        """The entry point `name`, or a RuntimeError saying which module provides it."""
        hook: Callable[..., Any] | None = getattr(self, name)
        if hook is None:
            module = "siopg.dashboard" if name.startswith("dashboard") else "siopg.metrics"
            raise RuntimeError(f"{name} is not registered: import {module} (import siopg does)")
        return hook


EXTENSIONS = Extensions()
