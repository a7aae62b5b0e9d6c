"""One server's stats snapshot: what it publishes for the cluster dashboard (no I/O here).

`read(io)` takes one `Reading` of a server: its plain-int `Metrics` counters plus gauges read
from the live objects (engine connections by transport, sockets and rooms per namespace,
folded like the metrics' labels). A `Sampler` turns successive readings into the snapshot
document the server publishes (`Sampler.sample()`): aggregates only, never per-socket data,
with per-second rates since the previous sample and a ring of history points (every `step`
seconds over `window`), so the charts exist whether or not anyone watched. Its size depends
on the number of namespace labels and counters, not on the number of sockets.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from siopg.metrics import (
    DEFAULT_MAX_NAMESPACE_LABELS,
    Metrics,
    app_room_count,
    fold_namespaces,
)

if TYPE_CHECKING:  # pragma: no cover
    from siopg.server.server import Server

#: counters turned into rates, in the order the page shows them
RATE_COUNTERS = ("packets_in", "packets_out", "broadcasts")
#: counters kept in the history ring (plus every `recovery_failed_<cause>` counter)
HISTORY_COUNTERS = ("packets_in", "packets_out", "recoveries_attempted", "recoveries_succeeded")
#: counters named `recovery_failed_<cause>` count failed recoveries by cause
FAILED_PREFIX = "recovery_failed_"
#: the snapshot document's format version
VERSION = 1
HISTORY_STEP = 5.0     # seconds between history points
HISTORY_WINDOW = 600.0  # seconds of history kept
MIN_RATE_INTERVAL = 0.5  # rates are measured over at least this many seconds


def counter_names() -> tuple[str, ...]:
    """Every cumulative counter of `Metrics` (read at call time: new counters show up)."""
    return tuple(n for n in Metrics.__slots__ if n not in Metrics.NOT_COUNTERS)


@dataclass(slots=True)
class NamespaceReading:
    name: str
    sockets: int
    rooms: int  # rooms made by the application: each socket's own room (its id) is left out


@dataclass(slots=True)
class Reading:
    """One moment of one server; `t` is a wall-clock time in seconds."""

    t: float
    counters: dict[str, int]
    transports: dict[str, int]
    namespaces: list[NamespaceReading] = field(default_factory=list)

    @property
    def sockets(self) -> int:
        return sum(n.sockets for n in self.namespaces)

    @property
    def rooms(self) -> int:
        return sum(n.rooms for n in self.namespaces)


def read(io: Server, now: float) -> Reading:
    """Read `io`'s counters and gauges; O(connections + rooms), no awaits."""
    m = io.metrics
    counters = {name: int(getattr(m, name)) for name in counter_names()}
    # folded like the metrics' labels: client-made namespaces cannot grow the page without bound
    limit = getattr(m, "max_namespace_labels", DEFAULT_MAX_NAMESPACE_LABELS)
    namespaces = [
        NamespaceReading(label, sum(len(nsp.sockets) for nsp in nsps),
                         sum(app_room_count(getattr(nsp, "adapter", None)) for nsp in nsps))
        for label, nsps in sorted(fold_namespaces(io.namespaces, limit).items())
    ]
    return Reading(now, counters, io.open_connections(), namespaces)


def postgres_cluster(io: Server) -> Any:
    """The Postgres adapter's shared cluster object of `io` (None with another adapter)."""
    for nsp in list(io.namespaces.values()):
        cluster = getattr(getattr(nsp, "adapter", None), "cluster", None)
        if hasattr(cluster, "stats_table"):
            return cluster
    return None


@dataclass(slots=True)
class Identity:
    """Who the snapshot is about: the same id as the cluster's heartbeats, the same worker
    name as the logs and the supervisor's metrics (None outside the supervisor)."""

    id: str
    worker: str | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    heartbeat_timeout: float | None = None


class Sampler:
    """Readings of one server -> its snapshot document, with rates and a history ring."""

    def __init__(
        self,
        reader: Callable[[float], Reading],
        identity: Identity,
        clock: Callable[[], float] = time.time,
        step: float = HISTORY_STEP,
        window: float = HISTORY_WINDOW,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        if step <= 0 or window < step:
            raise ValueError("history step must be positive and at most the window")
        self.reader = reader
        self.identity = identity
        self.clock = clock
        self.step = step
        self.window = window
        self.extra = extra  # more top-level fields (the packet log's pruned total)
        self.interval = 2.0  # how often the publisher samples (told to readers, for staleness)
        self.points: deque[tuple[float, int, dict[str, int]]] = deque(maxlen=int(window // step) + 1)
        self.last: Reading | None = None
        self.latest: dict[str, Any] | None = None

    def sample(self) -> dict[str, Any]:
        """Read the server now; the document it would publish (also kept as `latest`)."""
        reading = self.reader(self.clock())
        prev = self.last
        rates = {name: 0.0 for name in RATE_COUNTERS}
        if prev is not None and reading.t - prev.t < MIN_RATE_INTERVAL and self.latest is not None:
            rates = self.latest["rates"]  # too close to the last one: keep its rates and baseline
        else:
            self.last = reading
            if prev is not None:
                dt = reading.t - prev.t
                rates = {n: max(0, reading.counters.get(n, 0) - prev.counters.get(n, 0)) / dt for n in RATE_COUNTERS}
        if not self.points or reading.t - self.points[-1][0] >= self.step:
            kept = {n: v for n, v in reading.counters.items() if n in HISTORY_COUNTERS or n.startswith(FAILED_PREFIX)}
            self.points.append((reading.t, reading.sockets, kept))
        self.latest = self._document(reading, rates)
        return self.latest

    def _document(self, reading: Reading, rates: dict[str, float]) -> dict[str, Any]:
        ident = self.identity
        names = sorted({n for _, _, c in self.points for n in c})
        doc = {
            "v": VERSION,
            "id": ident.id,
            "worker": ident.worker,
            "host": ident.host,
            "pid": ident.pid,
            "started": round(ident.started, 3),
            "t": round(reading.t, 3),
            "interval": self.interval,
            "heartbeat_timeout": ident.heartbeat_timeout,
            "sockets": reading.sockets,
            "rooms": reading.rooms,
            "transports": dict(sorted(reading.transports.items())),
            "namespaces": [[n.name, n.sockets, n.rooms] for n in reading.namespaces],
            "counters": dict(reading.counters),
            "rates": {n: round(v, 3) for n, v in rates.items()},
            "history": {
                "step": self.step,
                "t": [round(t, 3) for t, _, _ in self.points],
                "sockets": [s for _, s, _ in self.points],
                "counters": {n: [c.get(n, 0) for _, _, c in self.points] for n in names},
            },
        }
        if self.extra is not None:
            doc.update(self.extra())
        return doc
