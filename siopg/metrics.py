"""Prometheus metrics, kept off the hot path.

The server bumps plain integer attributes of `Metrics` (one add per packet, or per broadcast
with the recipient count: never a call per recipient); gauges (open connections by transport,
sockets and application rooms per namespace) are read from the live objects, through the
server's public `open_connections()` and `namespaces`, only when Prometheus scrapes. A custom
collector turns them into samples, in a registry of the server's own (several servers in one
process never clash).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from siopg.server.server import Server


class Metrics:
    """Counters as plain ints; cheap to increment anywhere."""

    __slots__ = (
        "packets_in",
        "packets_out",
        "broadcasts",
        "recoveries_attempted",
        "recoveries_succeeded",
        "sessions_persisted",
        "engine_connections_total",
    )

    def __init__(self) -> None:
        self.packets_in = 0
        self.packets_out = 0
        self.broadcasts = 0
        self.recoveries_attempted = 0
        self.recoveries_succeeded = 0
        self.sessions_persisted = 0
        self.engine_connections_total = 0


class _Collector:
    def __init__(self, server: "Server") -> None:
        self._server = server

    def describe(self) -> list[Any]:
        return []  # unchecked collector: collect() is only called at scrape time

    def collect(self) -> Iterator[Any]:
        server = self._server
        m = server.metrics
        counters = [
            ("siopg_packets_received", "Socket.IO EVENT packets received from clients", m.packets_in),
            ("siopg_packets_sent", "Socket.IO packets queued to client connections", m.packets_out),
            ("siopg_broadcasts", "Broadcast emits (each counted once, whatever the recipients)", m.broadcasts),
            ("siopg_recoveries_attempted", "CONNECTs that asked to recover a session", m.recoveries_attempted),
            ("siopg_recoveries_succeeded", "Sessions recovered", m.recoveries_succeeded),
            ("siopg_sessions_persisted", "Sessions kept for connection state recovery", m.sessions_persisted),
            ("siopg_engine_connections", "Engine.IO connections opened", m.engine_connections_total),
        ]
        for name, doc, value in counters:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
        by_transport = server.open_connections()
        open_conns = GaugeMetricFamily("siopg_engine_connections_open", "Open Engine.IO connections")
        open_conns.add_metric([], sum(by_transport.values()))
        yield open_conns
        transports = GaugeMetricFamily(
            "siopg_engine_connections_by_transport",
            "Open Engine.IO connections by current transport",
            labels=["transport"],
        )
        for transport, count in sorted(by_transport.items()):
            transports.add_metric([transport], count)
        yield transports
        sockets = GaugeMetricFamily(
            "siopg_connected_sockets", "Connected sockets per namespace", labels=["namespace"]
        )
        rooms = GaugeMetricFamily(
            "siopg_rooms", "Rooms made by the application per namespace (sockets' own rooms left out)",
            labels=["namespace"],
        )
        for name, nsp in list(server.namespaces.items()):
            sockets.add_metric([name], len(nsp.sockets))
            rooms.add_metric([name], app_room_count(nsp.adapter))
        yield sockets
        yield rooms
        yield from publish_families(server)


def app_room_count(adapter: Any) -> int:
    """Rooms of `adapter` made by the application: each socket's own room (its id) is left out.

    O(rooms); None (a namespace without an adapter) counts 0.
    """
    if adapter is None:
        return 0
    rooms = getattr(adapter, "rooms", None) or {}
    own = getattr(adapter, "sids", None) or {}
    return sum(1 for room in list(rooms) if room not in own)


def make_registry(server: "Server") -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(server))  # type: ignore[arg-type]
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def aiohttp_handler(server: "Server", request: "web.Request") -> "web.Response":
    from aiohttp import web

    body, content_type = render(server.metrics_registry)
    # aiohttp wants the charset apart from the media type
    media, _, params = content_type.partition(";")
    charset = "utf-8"
    if "charset=" in params:
        charset = params.split("charset=", 1)[1].strip()
    return web.Response(body=body, content_type=media.strip(), charset=charset)


def publish_stats(server: Server) -> dict[str, int] | None:
    """The cluster publish buffers of `server`'s adapters, summed (each counted once: the
    namespaces of one adapter factory share one). None when no adapter has one."""
    seen: set[int] = set()
    totals = {"messages": 0, "bytes": 0, "refused": 0, "dropped": 0}
    for nsp in list(server.namespaces.values()):
        stats = getattr(getattr(nsp, "adapter", None), "publish_stats", None)
        got = stats() if callable(stats) else None
        if got is None or got[0] in seen:
            continue
        seen.add(got[0])
        for key in totals:
            totals[key] += int(got[1].get(key, 0))
    return totals if seen else None


def publish_families(server: Server) -> Iterator[Any]:
    """Gauges of the publish retry buffer and counters of the messages it could not take."""
    totals = publish_stats(server)
    if totals is None:
        return
    for name, doc, value, family_type in (
        ("siopg_publish_buffer_messages", "Cluster messages waiting to be published (retry buffer depth)",
         totals["messages"], GaugeMetricFamily),
        ("siopg_publish_buffer_bytes", "Bytes of cluster messages waiting to be published", totals["bytes"],
         GaugeMetricFamily),
        ("siopg_publish_refused", "Emits refused because the publish buffer was full (reached nobody)",
         totals["refused"], CounterMetricFamily),
        ("siopg_publish_dropped", "Messages the database refused for good (bad data), dropped alone",
         totals["dropped"], CounterMetricFamily),
    ):
        family = family_type(name, doc)
        family.add_metric([], value)
        yield family
