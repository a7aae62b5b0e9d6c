"""The Postgres adapter: `siopg.PostgresAdapter(dsn, ...)` is a factory (namespace -> adapter).

One factory is one cluster member (one server id): every namespace adapter it makes shares
its `PgCluster`, which owns the pool and the lifecycle and wires the parts, each in its module:

  listener.LogListener      the LISTEN connection and the in-order log reader
  router.LogRouter          each row the reader fetches -> its namespace adapter
  publisher.Publisher       batched, ordered, idempotent publishing
  membership.Membership     heartbeats, who is alive, server counts
  sessions.SessionWriter    the ordered queue of session writes (typed ops)
  pruner.Pruner             retention and pruning
  stats_table.StatsTable    the servers' stats snapshots (written and read by siopg.dashboard)
  namespace.PostgresNamespaceAdapter   one namespace's view (recovery, takeover)

Delivery order: a broadcast is delivered to local sockets when its row comes back through
the log reader, so every process delivers in offset (commit) order, its own packets
included, also while Postgres is unreachable: broadcasts then wait in the (bounded)
publish buffer and every client, local or not, gets them with their offsets once the
retried publish goes through, exactly once (the publish is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

import asyncpg

from siopg._log import clip
from siopg._tasks import TaskSet
from siopg.adapter.base import NamespaceLike
from siopg.adapter.cluster import ClusterMessage
from siopg.adapter.postgres import codec
from siopg.adapter.postgres.aio import cancel_and_wait
from siopg.adapter.postgres.listener import LogListener
from siopg.adapter.postgres.membership import Membership
from siopg.adapter.postgres.migrations import DEFAULT_SCHEMA, channel_name, check_schema, quote_ident, validate_schema
from siopg.adapter.postgres.namespace import PostgresNamespaceAdapter
from siopg.adapter.postgres.pruner import Pruner
from siopg.adapter.postgres.publisher import Publisher
from siopg.adapter.postgres.router import LogRouter
from siopg.adapter.postgres.sessions import SessionWriteError, SessionWriter
from siopg.adapter.postgres.stats_table import StatsTable
from siopg.adapter.postgres.store import LogStats, Store

__all__ = ["PgCluster", "PostgresAdapter", "PostgresNamespaceAdapter", "SessionWriteError"]

log = logging.getLogger("siopg.adapter.postgres")
# how long a dead client connection may go unnoticed when the server's ping settings are unknown
DEFAULT_DEAD_TRANSPORT_BOUND = 60.0

ErrorHandler = Callable[[BaseException], Any]


class PostgresAdapter:
    """Adapter factory for `siopg.Server(adapter=siopg.PostgresAdapter(dsn))`.

    Options (seconds): `heartbeat_interval` (5) and `heartbeat_timeout` (10) decide when a
    silent server stops counting; `cleanup_interval` (30) how often expired packets, sessions
    and nodes are pruned; `retention` how long packets are kept for recovery (default: the
    longest `max_disconnection_duration` of the namespaces, else 120); `request_timeout` (5)
    for fetch_sockets / server_side_emit answers; `error_handler(exc)` gets every error
    (they are logged too); `max_buffer` (100 000 messages) and `max_buffer_bytes` (64 MiB)
    bound the publish retry buffer (see publisher.py; past them emits are refused and reported);
    `pool_size` the write pool; `snapshot_interval` (0.5) how often the sessions of connected
    sockets are written (so a client recovers even when its server crashes).
    `restore_timeout` (5): how long a recovery waits for an unreachable Postgres before the
    client's connection is closed so it comes back later (never a fresh session for a session
    that may exist); `takeover_timeout` (1): how long a recovery waits for the server holding
    the session live to hand it over (a pid presented while its socket is connected elsewhere:
    that socket's connection is closed) before that server is taken for dead.
    `dead_transport_bound`: how long (seconds) a client's dead connection can go unnoticed,
    i.e. how long before its disconnect it was last known to receive what it was sent. None
    (default): the server's `ping_interval + ping_timeout` plus `heartbeat_interval` + 2 s
    (the log reader's polling lag and write delays), 52 s with the defaults; 60 s when the
    server's ping settings cannot be read. Packets are kept `window + heartbeat_timeout +`
    this bound, and a recovery after pruning is refused only if a pruned packet was written
    after that moment (see the adapter README, "Quiet sessions and pruning").
    `synchronous_commit=False` skips the WAL flush wait of each publish (a few ms of latency
    per batch on most disks); the price: if PostgreSQL itself crashes (a clean restart is
    fine), the last fraction of a second of packets may be lost and their offsets reused,
    so clients recovering across that crash may miss or repeat packets.
    PgBouncer in transaction mode breaks LISTEN: give a direct DSN.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 10.0,
        cleanup_interval: float = 30.0,
        retention: float | None = None,
        request_timeout: float = 5.0,
        error_handler: ErrorHandler | None = None,
        max_buffer: int = 100_000,
        max_buffer_bytes: int = 64 * 1024 * 1024,
        pool_size: int = 4,
        snapshot_interval: float = 0.5,
        synchronous_commit: bool = True,
        restore_timeout: float = 5.0,
        takeover_timeout: float = 1.0,
        dead_transport_bound: float | None = None,
    ) -> None:
        self.dsn = dsn
        self.schema = validate_schema(schema)
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.cleanup_interval = cleanup_interval
        self.retention = retention
        self.request_timeout = request_timeout
        self.error_handler = error_handler
        self.max_buffer = max_buffer
        self.max_buffer_bytes = max_buffer_bytes
        self.pool_size = pool_size
        self.snapshot_interval = snapshot_interval
        self.synchronous_commit = synchronous_commit
        self.restore_timeout = restore_timeout
        self.takeover_timeout = takeover_timeout
        if dead_transport_bound is not None and not dead_transport_bound > 0:
            raise ValueError("dead_transport_bound must be a positive number of seconds (or None)")
        self.dead_transport_bound = dead_transport_bound
        self.uid = secrets.token_hex(8)
        self.cluster = PgCluster(self)

    def __call__(self, nsp: NamespaceLike) -> PostgresNamespaceAdapter:
        return PostgresNamespaceAdapter(nsp, self.cluster)


class PgCluster:
    """What one factory shares across its namespaces (started by the first adapter's init):
    the pool and the lifecycle; the jobs are done by the parts it wires (module docstring)."""

    def __init__(self, options: PostgresAdapter) -> None:
        self.options = options
        self.uid = options.uid
        self.schema_q = quote_ident(options.schema)
        self.adapters: dict[str, PostgresNamespaceAdapter] = {}
        self.pool: asyncpg.Pool | None = None
        self.listener: LogListener | None = None
        self.publisher: Publisher | None = None
        self.store: Store | None = None
        self.stats_table: StatsTable | None = None  # set while the cluster runs
        self.router = LogRouter(self.uid, self.adapters)
        self.membership = Membership(self.uid, options.heartbeat_timeout, self.report)
        self.sessions = SessionWriter(self.uid, options.snapshot_interval, self.report)
        self.pruner = Pruner(options.retention, options.heartbeat_timeout, self._windows, self.dead_transport_bound)
        self._tasks: list[asyncio.Task[None]] = []
        self._handler_tasks = TaskSet(log)  # async error handlers running
        self._lock = asyncio.Lock()
        self.errors = 0

    # errors ------------------------------------------------------------------------------
    def report(self, exc: BaseException) -> None:
        self.errors += 1
        log.error("siopg postgres adapter (%s): %s: %s", self.uid, type(exc).__name__, clip(exc))
        handler = self.options.error_handler
        if handler is not None:
            try:
                result = handler(exc)
                if asyncio.iscoroutine(result):
                    self._handler_tasks.spawn(result, "the Postgres adapter's error handler")
            except Exception:
                log.exception("error in the Postgres adapter's error handler")

    # lifecycle ---------------------------------------------------------------------------
    async def register(self, adapter: PostgresNamespaceAdapter) -> None:
        async with self._lock:
            if self.pool is None:
                await self._start()
            self.adapters[adapter.nsp.name] = adapter
            await self.membership.join([adapter.nsp.name])  # counts at once

    async def _start(self) -> None:
        o = self.options
        pool = await asyncpg.create_pool(
            o.dsn, min_size=1, max_size=o.pool_size, reset=_light_reset,
            server_settings={
                "application_name": "siopg", **({} if o.synchronous_commit else {"synchronous_commit": "off"})
            },
        )
        try:
            async with pool.acquire() as conn:
                await check_schema(conn, o.schema)
            listener = LogListener(
                o.dsn, self.schema_q, channel_name(o.schema), self.router.on_row, self.report,
                poll_interval=o.heartbeat_interval,
            )
            await listener.start()
        except BaseException:
            await pool.close()
            raise
        self.pool, self.listener = pool, listener
        self.store = store = Store(pool, o.schema, self.schema_q)
        self.membership.store = self.pruner.store = store
        self.stats_table = StatsTable(pool, self.schema_q)
        self.publisher = Publisher(
            pool, self.schema_q, self.uid, self.report, max_buffer=o.max_buffer, max_buffer_bytes=o.max_buffer_bytes
        )
        self.publisher.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(o.heartbeat_interval, self._heartbeat), name="siopg-heartbeat"),
            loop.create_task(self._every(o.cleanup_interval, self.pruner.prune), name="siopg-prune"),
            self.sessions.start(store),
        ]

    async def unregister(self, adapter: PostgresNamespaceAdapter) -> None:
        async with self._lock:
            if self.adapters.get(adapter.nsp.name) is adapter:
                del self.adapters[adapter.nsp.name]
            try:
                await self.membership.leave([adapter.nsp.name])  # leaves the count at once
            except Exception as exc:  # noqa: BLE001
                self.report(exc)
            if not self.adapters and self.pool is not None:
                await self._stop()

    async def _stop(self) -> None:
        if not await self.sessions.wait_idle(3.0):
            self.report(RuntimeError("closing with session writes still pending"))
        await cancel_and_wait(self._tasks)
        self._tasks = []
        self.sessions.stop()
        self.membership.store = self.pruner.store = None
        if self.publisher is not None:
            await self.publisher.close(timeout=2.0)
        if self.listener is not None:
            await self.listener.close()
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.close(), 3.0)
            except Exception:  # noqa: BLE001
                self.pool.terminate()
        self.pool = self.listener = self.publisher = self.store = self.stats_table = None

    async def _every(self, interval: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self.report(exc)

    async def _heartbeat(self) -> None:
        alive = await self.membership.heartbeat(self.adapters)
        for name, adapter in list(self.adapters.items()):
            adapter.keep_only_servers(alive.get(name, set()))

    # retention and pruning (pruner.py) ---------------------------------------------------
    def _windows(self) -> list[float]:
        return [a.window for a in self.adapters.values() if a.window is not None]

    def dead_transport_bound(self) -> float:
        """How long a client's dead connection can go unnoticed (the option, or derived from
        the servers' ping settings of the namespaces served: the longest; see PostgresAdapter)."""
        if self.options.dead_transport_bound is not None:
            return self.options.dead_transport_bound
        pings = [p for a in self.adapters.values() if (p := a.ping_bound()) is not None]
        if not pings:
            return DEFAULT_DEAD_TRANSPORT_BOUND
        return max(pings) + self.options.heartbeat_interval + 2.0

    def retention(self) -> float:
        """How long packets are kept (see `Pruner.retention`)."""
        return self.pruner.retention()

    @property
    def pruned_packets(self) -> int:
        """Packets this process pruned (read by siopg.metrics)."""
        return self.pruner.pruned_packets

    @property
    def log_stats(self) -> LogStats:
        """The log's size after this process's last pruning pass (read by siopg.metrics)."""
        return self.pruner.log_stats

    # publishing --------------------------------------------------------------------------
    def publish(self, message: ClusterMessage) -> bool:
        if self.publisher is None:
            self.report(RuntimeError("the Postgres adapter is closed; message dropped"))
            return False
        try:
            row = codec.encode(message)
        except (TypeError, ValueError) as exc:
            self.report(exc)
            return False
        return self.publisher.submit(row)


async def _light_reset(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset round trip (RESET ALL; UNLISTEN *; ...):
    pool connections never LISTEN, change settings or hold session-level locks."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")
