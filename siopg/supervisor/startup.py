"""What `siopg serve` says as it starts: why it cannot listen, and the URLs it serves besides the app.

Shared by the one-process path (siopg.cli) and the supervisor, so both say the same thing.
"""

from __future__ import annotations

import errno


def listen_error(host: str, port: int, exc: OSError) -> str:
    """One actionable line for a port that cannot be bound."""
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another siopg or server is running there):"
                f" stop it or pick another --port")
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on {host}:{port}: use a port above 1023 or run with the needed rights"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def endpoint_lines(host: str, port: int, dashboard: bool, metrics: bool) -> list[str]:
    """The startup lines naming the dashboard and metrics URLs, when they are on."""
    lines = []
    if dashboard:
        lines.append(f"dashboard on http://{host}:{port}/dashboard")
    if metrics:
        lines.append(f"Prometheus metrics on http://{host}:{port}/metrics")
    return lines
