"""What the dashboard shows, read from siopg's own counters (no I/O, nothing on the hot path).

`read(io)` takes one `Reading` of a server: its plain-int `Metrics` counters plus gauges read
from the live objects (engine connections by transport, sockets and rooms per namespace).
`History` turns successive readings into per-second rates and keeps the last minute of points
for the sparklines. Both are pure and cheap enough to run about once a second while someone
watches; nothing here runs when nobody does.
"""

from __future__ import annotations

from collections import deque
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
#: cumulative counters copied from `siopg.metrics.Metrics` (all of them)
COUNTERS: tuple[str, ...] = tuple(n for n in Metrics.__slots__ if n not in Metrics.NOT_COUNTERS)


@dataclass(slots=True)
class NamespaceReading:
    name: str
    sockets: int
    rooms: int  # rooms made by the application: each socket's own room (its id) is left out


@dataclass(slots=True)
class Reading:
    """One moment of one server; `t` is a monotonic time in seconds."""

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

    @property
    def engine_open(self) -> int:
        return sum(self.transports.values())


def read(io: Server, now: float) -> Reading:
    """Read `io`'s counters and gauges; O(connections + rooms), no awaits."""
    m = io.metrics
    counters = {name: int(getattr(m, name)) for name in COUNTERS}
    # folded like the metrics' labels: client-made namespaces cannot grow the page without bound
    limit = getattr(m, "max_namespace_labels", DEFAULT_MAX_NAMESPACE_LABELS)
    namespaces = [
        NamespaceReading(label, sum(len(nsp.sockets) for nsp in nsps),
                         sum(app_room_count(getattr(nsp, "adapter", None)) for nsp in nsps))
        for label, nsps in sorted(fold_namespaces(io.namespaces, limit).items())
    ]
    return Reading(now, counters, io.open_connections(), namespaces)


@dataclass(slots=True)
class Point:
    """One sparkline point: gauges at `t`, rates over the interval that ended at `t`."""

    t: float
    sockets: int
    engine_open: int
    rates: dict[str, float]


class History:
    """Per-second rates between successive readings, and the points of the last `window` s."""

    def __init__(self, window: float = 60.0, max_points: int = 240) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        self.points: deque[Point] = deque(maxlen=max_points)
        self.last: Reading | None = None

    def add(self, reading: Reading) -> Point:
        """Record `reading`; the first one has zero rates (nothing to compare it with)."""
        prev = self.last
        rates = {name: 0.0 for name in RATE_COUNTERS}
        if prev is not None:
            dt = reading.t - prev.t
            if dt > 0:
                for name in RATE_COUNTERS:
                    delta = reading.counters[name] - prev.counters[name]
                    rates[name] = max(0, delta) / dt
        point = Point(reading.t, reading.sockets, reading.engine_open, rates)
        self.last = reading
        self.points.append(point)
        horizon = reading.t - self.window
        while self.points and self.points[0].t < horizon:
            self.points.popleft()
        return point


def recovery_rate(attempted: int, succeeded: int) -> float | None:
    """Share of recovery attempts that restored the session; None before any attempt."""
    return succeeded / attempted if attempted else None


def to_json(reading: Reading, point: Point, history: History, server_count: int | None) -> dict[str, Any]:
    """The `stats.json` document (documented in dashboard/README.md)."""
    c = reading.counters
    now = reading.t
    points = list(history.points)
    return {
        "server_count": server_count,
        "sockets": reading.sockets,
        "rooms": reading.rooms,
        "namespaces": [{"name": n.name, "sockets": n.sockets, "rooms": n.rooms} for n in reading.namespaces],
        "engine": {
            "open": reading.engine_open,
            "by_transport": dict(sorted(reading.transports.items())),
            "opened_total": c["engine_connections_total"],
        },
        "counters": {name: c[name] for name in COUNTERS if name != "engine_connections_total"},
        "rates": {name: round(point.rates[name], 3) for name in RATE_COUNTERS},
        "recovery": {
            "attempted": c["recoveries_attempted"],
            "succeeded": c["recoveries_succeeded"],
            "rate": recovery_rate(c["recoveries_attempted"], c["recoveries_succeeded"]),
        },
        "sessions_persisted": c["sessions_persisted"],
        "history": {
            "window": history.window,
            "age": [round(now - p.t, 3) for p in points],  # seconds before this reading
            "sockets": [p.sockets for p in points],
            "engine_open": [p.engine_open for p in points],
            **{name: [round(p.rates[name], 3) for p in points] for name in RATE_COUNTERS},
        },
    }
