"""Pruning: packets past the retention window, expired sessions and long-dead nodes.

Every `cleanup_interval` one server (a try-lock in SQL) deletes them in bounded batches
scanned from the oldest id. The counters it keeps are read by siopg.metrics.
"""

from __future__ import annotations

from collections.abc import Callable

from siopg.adapter.postgres.store import LogStats, Store


class Pruner:
    """Retention and one pruning pass (the cluster runs `prune` every `cleanup_interval`)."""

    def __init__(self, retention: float | None, heartbeat_timeout: float, windows: Callable[[], list[float]],
                 dead_transport: Callable[[], float] = lambda: 0.0) -> None:
        self._retention = retention  # the explicit option, or None: from the namespaces' windows
        self.heartbeat_timeout = heartbeat_timeout
        self._windows = windows  # the recovery windows of the namespaces served now
        self._dead_transport = dead_transport  # how long a dead client connection goes unnoticed
        self.store: Store | None = None  # set while the cluster runs
        # packets this process pruned, the log's size after its last pass (for /metrics)
        self.pruned_packets = 0
        self.log_stats = LogStats()

    def retention(self) -> float:
        """How long packets (and live sessions of a dead server) are kept: the window plus
        `heartbeat_timeout`, since a crashed server's clients may have lost their connection up
        to that long after its last heartbeat (decision 6 of issue 7), plus how long a dead
        client connection can go unnoticed: every packet pruned was then written before the
        transport of any session still inside its window was last known alive, so pruning
        never makes a restore inside the window refuse (the rule in namespace.py)."""
        extra = self.heartbeat_timeout + self._dead_transport()
        if self._retention is not None:
            return self._retention + extra
        return max(self._windows(), default=120.0) + extra

    async def prune(self) -> None:
        assert self.store is not None
        retention = self.retention()
        # node rows outlive the window: live sessions of a dead server stay valid that long
        result = await self.store.prune(retention, max(60.0, 6 * self.heartbeat_timeout, retention + 60.0))
        self.pruned_packets += result.packets
        self.log_stats = await self.store.log_stats()
