"""Event-loop lag: how late a callback scheduled every `interval` seconds actually runs.

A blocked loop (a slow handler, a GC pause, a CPU-starved process) delays every socket of the
process at once; this probe shows it at the cost of one timer callback per interval (no task).
"""

from __future__ import annotations

import asyncio

from siopg._histogram import Histogram

PROBE_INTERVAL = 0.5  # seconds between probes


class LoopLagProbe:
    """Observes each probe's lateness (seconds) in `histogram`; `start()` in the running loop."""

    def __init__(self, histogram: Histogram, interval: float = PROBE_INTERVAL) -> None:
        self.histogram = histogram
        self.interval = interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        if self._handle is None:
            self._loop = asyncio.get_running_loop()
            self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        self.histogram.observe(max(0.0, self._loop.time() - self._due))
        self._schedule()
