"""Prometheus metrics, kept off the hot path.

The server bumps plain integer attributes of `Metrics` (one add per packet, or per broadcast
with the recipient count: never a call per recipient); gauges (open connections by transport,
sockets and application rooms per namespace) are read from the live objects, through the
server's public `open_connections()` and `namespaces`, only when Prometheus scrapes. A custom
collector turns them into samples, in a registry of the server's own (several servers in one
process never clash).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import siopg
from siopg._histogram import Histogram
from siopg.adapter.errors import RECOVERY_CAUSES

# The counters live in the server layer (the server bumps them); re-exported here.
from siopg.server.counters import DEFAULT_MAX_NAMESPACE_LABELS, RECOVERY_FAILED_PREFIX, Metrics
from siopg.server.extensions import EXTENSIONS

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from siopg.server.server import Server

__all__ = [
    "DEFAULT_MAX_NAMESPACE_LABELS",
    "MAX_LABEL_BYTES",
    "MIN_SCRAPE_INTERVAL",
    "OTHER_LABEL",
    "Metrics",
    "aiohttp_handler",
    "app_room_count",
    "fold_namespaces",
    "make_registry",
    "render",
    "setup",
]


#: a namespace name longer than this (UTF-8 bytes) never becomes a label value of its own
MAX_LABEL_BYTES = 256
#: where namespaces that are not dynamic children are counted past the limit
OTHER_LABEL = "other"
#: a scrape within this many seconds of the previous one gets the same body (cost bound)
MIN_SCRAPE_INTERVAL = 1.0


class _Collector:
    def __init__(self, server: Server) -> None:
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
            ("siopg_packets_replayed", "Missed packets sent to recovered sockets", m.packets_replayed),
            ("siopg_acks_answered", "Acknowledgements clients sent for the server's emits", m.acks_answered),
            ("siopg_acks_timed_out", "Acknowledgements waited for in vain until the emit's timeout (per client)",
             m.acks_timed_out),
            ("siopg_bytes_received", "Engine.IO bytes read (polling bodies, WebSocket frames)",
             server.engine.traffic.bytes_in),
            ("siopg_bytes_sent", "Engine.IO bytes written (polling bodies, WebSocket frames)",
             server.engine.traffic.bytes_out),
            ("siopg_sessions_persisted", "Sessions kept for connection state recovery", m.sessions_persisted),
            ("siopg_engine_connections", "Engine.IO connections opened", m.engine_connections_total),
        ]
        for name, doc, value in counters:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
        yield from _labelled_families(m)
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
        limit = getattr(m, "max_namespace_labels", DEFAULT_MAX_NAMESPACE_LABELS)
        for label, nsps in fold_namespaces(server.namespaces, limit).items():
            sockets.add_metric([label], sum(len(nsp.sockets) for nsp in nsps))
            rooms.add_metric([label], sum(app_room_count(nsp.adapter) for nsp in nsps))
        yield sockets
        yield rooms
        yield from _name_limit_families(server)
        yield from postgres_log_metrics(server)
        yield from publish_families(server)
        yield from postgres_families(server)


def _labelled_families(m: Metrics) -> Iterator[Any]:
    """Recovery failures by cause, disconnections by reason, loop lag, build info."""
    failed = CounterMetricFamily(
        "siopg_recovery_failed", "Recoveries that failed, by cause (the client got a fresh session)", labels=["cause"]
    )
    for cause in RECOVERY_CAUSES:
        failed.add_metric([cause], getattr(m, RECOVERY_FAILED_PREFIX + cause))
    yield failed
    gone = CounterMetricFamily(
        "siopg_disconnections", "Sockets that left their namespace, by socket.io's reason", labels=["reason"]
    )
    for reason, count in m.disconnections.items():
        gone.add_metric([reason], count)
    yield gone
    yield histogram_family(
        "siopg_event_loop_lag_seconds", "How late a callback scheduled every 0.5 s ran (event loop lag)", m.loop_lag
    )
    info = GaugeMetricFamily("siopg_build_info", "The siopg version this process runs (always 1)", labels=["version"])
    info.add_metric([siopg.__version__], 1)
    yield info


def histogram_family(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    """A Prometheus histogram family of a siopg._histogram.Histogram."""
    buckets = [("+Inf" if bound == float("inf") else repr(float(bound)), count) for bound, count in hist.cumulative()]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.sum)


def _labelable(name: str) -> bool:
    if len(name) > MAX_LABEL_BYTES:
        return False
    try:
        return len(name.encode("utf-8")) <= MAX_LABEL_BYTES
    except UnicodeEncodeError:  # a lone surrogate: not valid in an exposition
        return False


def fold_namespaces(namespaces: Mapping[str, Any], limit: int) -> dict[str, list[Any]]:
    """Namespaces grouped by the `namespace` label value they are counted under.

    Clients create dynamic child namespaces (any name a parent accepts), so one label per
    namespace would let them grow every scrape without bound. The first `limit` namespaces
    (in creation order) whose names are at most MAX_LABEL_BYTES get a label of their own;
    any other dynamic child is counted under `<parent name>/*` (e.g. "/_1/*"), and any other
    namespace under "other". At most `limit` + parents + 1 label values, each short.
    """
    out: dict[str, list[Any]] = {}
    own = 0
    for name, nsp in list(namespaces.items()):
        if own < limit and _labelable(name):
            own += 1
            out.setdefault(name, []).append(nsp)
            continue
        parent = getattr(nsp, "_parent", None)
        parent_name = getattr(parent, "name", None)
        label = f"{parent_name}/*" if isinstance(parent_name, str) and _labelable(parent_name) else OTHER_LABEL
        out.setdefault(label, []).append(nsp)
    return out


def app_room_count(adapter: Any) -> int:
    """Rooms of `adapter` made by the application: each socket's own room (its id) is left out.

    O(rooms); None (a namespace without an adapter) counts 0.
    """
    if adapter is None:
        return 0
    rooms = getattr(adapter, "rooms", None) or {}
    own = getattr(adapter, "sids", None) or {}
    return sum(1 for room in list(rooms) if room not in own)


def make_registry(server: Server) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(server))
    return registry


def setup(io: Server, app: web.Application, path: str = "/metrics", auth: Any = None) -> None:
    """Serve `io`'s Prometheus metrics at GET `path` of an aiohttp app (what
    `io.aiohttp_app(metrics=True)` and `io.attach(app, metrics=True)` do).

    `auth`: None, a (user, password) tuple for HTTP basic auth or a callable(request) -> bool,
    as for siopg.dashboard (`siopg serve --metrics-auth USER:PASSWORD`)."""

    async def metrics(request: web.Request) -> web.Response:
        return await aiohttp_handler(io, request)

    if auth is not None:  # siopg.dashboard (and jinja2) load only when asked for
        from siopg.dashboard import auth as auth_mod

        checked = auth_mod.validate(auth)
        serve = metrics

        async def metrics(request: web.Request) -> web.Response:
            refusal = await auth_mod.check(checked, request)
            return refusal if refusal is not None else await serve(request)

    app.router.add_get(path, metrics)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def aiohttp_handler(server: Server, request: web.Request) -> web.Response:
    from aiohttp import web

    # at most one collection per MIN_SCRAPE_INTERVAL, whoever asks: it costs O(connections)
    now = time.monotonic()
    cached = getattr(server.metrics, "last_scrape", None)
    content_type = CONTENT_TYPE_LATEST
    if cached is not None and now - cached[0] < MIN_SCRAPE_INTERVAL:
        body = cached[1]
    else:
        body, content_type = render(server.metrics_registry)
        server.metrics.last_scrape = (now, body)
    # aiohttp wants the charset apart from the media type
    media, _, params = content_type.partition(";")
    charset = "utf-8"
    if "charset=" in params:
        charset = params.split("charset=", 1)[1].strip()
    return web.Response(body=body, content_type=media.strip(), charset=charset)


def _name_limit_families(server: Server) -> Iterator[Any]:
    """Names refused and dynamic namespaces (bounded by `max_dynamic_namespaces`)."""
    m = server.metrics
    for name, doc, value in (
        (
            "siopg_invalid_names",
            "CONNECTs to an invalid namespace name and EVENTs with an invalid event name (connection closed)",
            m.invalid_names,
        ),
        (
            "siopg_dynamic_namespaces_refused",
            "CONNECTs refused because max_dynamic_namespaces was reached",
            m.dynamic_namespaces_refused,
        ),
        (
            "siopg_connection_namespaces_refused",
            "CONNECTs refused because the connection had max_namespaces_per_connection",
            m.connection_namespaces_refused,
        ),
    ):
        family = CounterMetricFamily(name, doc)
        family.add_metric([], value)
        yield family
    count = getattr(server, "dynamic_namespace_count", None)
    gauge = GaugeMetricFamily("siopg_dynamic_namespaces", "Dynamic child namespaces that exist now")
    gauge.add_metric([], count() if count is not None else 0)
    yield gauge


def postgres_log_metrics(server: Server) -> Iterator[Any]:
    """The Postgres packet log, as this process saw it at its last pruning pass (every
    `cleanup_interval`): its size and the age of its oldest row say whether pruning keeps up."""
    cluster = next((c for nsp in list(server.namespaces.values())
                    if hasattr(c := getattr(nsp.adapter, "cluster", None), "log_stats")), None)
    if cluster is None:  # not the Postgres adapter
        return
    rows = GaugeMetricFamily("siopg_pg_log_rows", "Rows in the Postgres packet log (id span: an upper bound)")
    rows.add_metric([], cluster.log_stats.rows)
    age = GaugeMetricFamily("siopg_pg_log_oldest_seconds", "Age of the oldest row of the Postgres packet log")
    age.add_metric([], cluster.log_stats.oldest_age)
    pruned = CounterMetricFamily("siopg_pg_log_pruned", "Packet log rows this process pruned")
    pruned.add_metric([], cluster.pruned_packets)
    yield rows
    yield age
    yield pruned
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


def _pg_clusters(server: Server) -> list[Any]:
    """The distinct Postgres clusters (one per PostgresAdapter factory) of `server`'s namespaces."""
    seen: dict[int, Any] = {}
    for nsp in list(server.namespaces.values()):
        cluster = getattr(getattr(nsp, "adapter", None), "cluster", None)
        if hasattr(cluster, "log_stats"):
            seen.setdefault(id(cluster), cluster)
    return list(seen.values())


def postgres_families(server: Server) -> Iterator[Any]:
    """The Postgres adapter's publish batch sizes, commit-to-delivery latency and LISTEN reconnects."""
    clusters = _pg_clusters(server)
    if not clusters:
        return
    batches: Histogram | None = None
    latency: Histogram | None = None
    reconnects = 0
    for cluster in clusters:
        publisher, listener = cluster.publisher, cluster.listener
        if publisher is not None:
            batches = _added(batches, publisher.batch_sizes)
        if listener is not None:
            latency = _added(latency, listener.delivery_latency)
            reconnects += listener.reconnects
    if batches is not None:
        yield histogram_family("siopg_publish_batch_size", "Rows per batch committed to the packet log", batches)
    if latency is not None:
        yield histogram_family(
            "siopg_commit_to_delivery_seconds",
            "From the publishing transaction to this process handing the packet to its sockets, per log row",
            latency,
        )
    family = CounterMetricFamily("siopg_pg_listen_reconnects", "Times the LISTEN connection (log reader) reconnected")
    family.add_metric([], reconnects)
    yield family


def _added(total: Histogram | None, hist: Histogram) -> Histogram:
    if total is None:
        total = Histogram(hist.bounds)
    total.add(hist)
    return total


# The server cannot import this module (it sits above the server): register what its
# conveniences (io.metrics_registry, io.attach(app, metrics=True), io.metrics_handler) use.
EXTENSIONS.metrics_registry = make_registry
EXTENSIONS.metrics_setup = setup
EXTENSIONS.metrics_handler = aiohttp_handler
