"""Small option records of the public API."""

from __future__ import annotations

from dataclasses import dataclass

from siopg.names import RESERVED_EVENTS

__all__ = ["RECOVERABLE_REASONS", "RESERVED_EVENTS", "Recovery"]


@dataclass(frozen=True, slots=True)
class Recovery:
    """Connection state recovery settings (socket.io's `connectionStateRecovery`).

    `max_disconnection_duration` is in seconds: how long a disconnected socket's session and
    the packets it may miss are kept. With `skip_middlewares`, a recovered socket does not run
    the namespace middlewares again.
    """

    max_disconnection_duration: float = 120.0
    skip_middlewares: bool = True

    def __post_init__(self) -> None:
        if self.max_disconnection_duration <= 0:
            raise ValueError("max_disconnection_duration must be positive")


# Disconnect reasons after which a session is kept for recovery (socket.io's list).
RECOVERABLE_REASONS = frozenset(
    {
        "transport error",
        "transport close",
        "forced close",
        "ping timeout",
        "server shutting down",
        "forced server close",
    }
)
