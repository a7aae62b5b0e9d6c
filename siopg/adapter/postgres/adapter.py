"""The Postgres adapter: `siopg.PostgresAdapter(dsn, ...)` is a factory (namespace -> adapter).

One factory is one cluster member (one server id): every namespace adapter it makes shares
its LISTEN connection, its write pool, its batched publisher, its heartbeat and its pruner.

Delivery order: a broadcast is delivered to local sockets when its row comes back through
the log reader, so every process delivers in offset (commit) order, its own packets
included, also while Postgres is unreachable: broadcasts then wait in the (bounded)
publish buffer and every client, local or not, gets them with their offsets once the
retried publish goes through, exactly once (the publish is idempotent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Callable

import asyncpg

from siopg._log import clip
from siopg.adapter.base import NamespaceLike, RecoveryUnavailable, RestoredSession, Session
from siopg.adapter.cluster import ClusterAdapter, ClusterMessage, MessageType
from siopg.adapter.postgres import codec
from siopg.adapter.postgres.aio import cancel_and_wait
from siopg.adapter.postgres.listener import LogListener
from siopg.adapter.postgres.migrations import (
    DEFAULT_SCHEMA,
    channel_name,
    check_schema,
    quote_ident,
    validate_schema,
)
from siopg.adapter.postgres.publisher import Publisher
from siopg.adapter.postgres.store import LogStats, Store, is_transient
from siopg.errors import SiopgError
from siopg.parser import Packet, PacketType

log = logging.getLogger("siopg.adapter.postgres")

ErrorHandler = Callable[[BaseException], Any]
_MAX_OFFSET = 2**63 - 1


class SessionWriteError(RuntimeError, SiopgError):
    """One socket's session could not be written (a value Postgres refuses); others were."""


# Session writes, queued in order for the one writer task of a PgCluster.
@dataclass(slots=True)
class _Dirty:
    """A live socket's rooms changed (or it connected): snapshot it on the next pass."""

    adapter: PostgresNamespaceAdapter
    sid: str


@dataclass(slots=True)
class _Forget:
    """A socket left: delete its live snapshot after FORGET_GRACE unless it is kept."""

    adapter: PostgresNamespaceAdapter
    sid: str
    pid: str
    at: float


@dataclass(slots=True)
class _Persist:
    """A disconnected socket's session, kept for `ttl` seconds (the recovery window)."""

    pid: str
    sid: str
    nsp: str
    rooms: list[str]
    data: bytes
    offset: int | None
    joined: str | None  # JSON {room: join offset}
    ttl: float
    at: float
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Barrier:
    """Resolved once every op queued before it was attempted."""

    done: asyncio.Future[None]


SessionOp = _Dirty | _Forget | _Persist | _Barrier


def _resolve(ops: list[Any]) -> None:
    for op in ops:
        done = getattr(op, "done", None)
        if done is not None and not done.done():
            done.set_result(None)


def _short(value: Any, limit: int = 200) -> str:
    """A client-supplied value (a name, an error quoting it) cut for logs."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


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
        self.uid = secrets.token_hex(8)
        self.cluster = PgCluster(self)

    def __call__(self, nsp: NamespaceLike) -> "PostgresNamespaceAdapter":
        return PostgresNamespaceAdapter(nsp, self.cluster)


class PgCluster:
    """What one factory shares across its namespaces (started by the first adapter's init)."""

    def __init__(self, options: PostgresAdapter) -> None:
        self.o = options
        self.uid = options.uid
        self.schema_q = quote_ident(options.schema)
        self.adapters: dict[str, PostgresNamespaceAdapter] = {}
        self.pool: asyncpg.Pool | None = None
        self.listener: LogListener | None = None
        self.publisher: Publisher | None = None
        self.store: Store | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self.alive: dict[str, set[str]] = {}
        self.errors = 0
        self._bad_node_rows: set[str] = set()
        # read by siopg.metrics: packets this process pruned, the log's size after its last pass
        self.pruned_packets = 0
        self.log_stats = LogStats()
        # session writes, applied in order by one task (see _session_writer)
        self._session_ops: list[SessionOp] = []
        self._session_failing = False
        self._session_wake = asyncio.Event()
        self._session_idle = asyncio.Event()
        self._session_idle.set()

    # errors ------------------------------------------------------------------------------
    def report(self, exc: BaseException) -> None:
        self.errors += 1
        log.error("siopg postgres adapter (%s): %s: %s", self.uid, type(exc).__name__, clip(exc))
        handler = self.o.error_handler
        if handler is not None:
            try:
                result = handler(exc)
                if asyncio.iscoroutine(result):
                    asyncio.ensure_future(result)
            except Exception:  # noqa: BLE001
                log.exception("error in the Postgres adapter's error handler")

    # lifecycle ---------------------------------------------------------------------------
    async def register(self, adapter: "PostgresNamespaceAdapter") -> None:
        async with self._lock:
            if self.pool is None:
                await self._start()
            self.adapters[adapter.nsp.name] = adapter
            assert self.store is not None
            self._heartbeat_failed(await self.store.heartbeat(self.uid, [adapter.nsp.name]))  # counts at once

    async def _start(self) -> None:
        o = self.o
        pool = await asyncpg.create_pool(
            o.dsn, min_size=1, max_size=o.pool_size, reset=_light_reset,
            server_settings={"application_name": "siopg", **({} if o.synchronous_commit else {"synchronous_commit": "off"})},
        )
        try:
            async with pool.acquire() as conn:
                await check_schema(conn, o.schema)
            listener = LogListener(
                o.dsn, self.schema_q, channel_name(o.schema), self._on_row, self.report,
                poll_interval=o.heartbeat_interval,
            )
            await listener.start()
        except BaseException:
            await pool.close()
            raise
        self.pool, self.listener = pool, listener
        self.store = Store(pool, o.schema, self.schema_q)
        self.publisher = Publisher(
            pool, self.schema_q, self.uid, self.report, max_buffer=o.max_buffer, max_buffer_bytes=o.max_buffer_bytes
        )
        self.publisher.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(o.heartbeat_interval, self._heartbeat), name="siopg-heartbeat"),
            loop.create_task(self._every(o.cleanup_interval, self._prune), name="siopg-prune"),
            loop.create_task(self._session_writer(), name="siopg-sessions"),
        ]

    async def unregister(self, adapter: "PostgresNamespaceAdapter") -> None:
        async with self._lock:
            if self.adapters.get(adapter.nsp.name) is adapter:
                del self.adapters[adapter.nsp.name]
            if self.store is not None:
                try:
                    await self.store.leave(self.uid, [adapter.nsp.name])  # leaves the count at once
                except Exception as exc:  # noqa: BLE001
                    self.report(exc)
            if not self.adapters and self.pool is not None:
                await self._stop()

    async def _stop(self) -> None:
        try:
            await asyncio.wait_for(self._session_idle.wait(), 3.0)
        except asyncio.TimeoutError:
            self.report(RuntimeError("closing with session writes still pending"))
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self.publisher is not None:
            await self.publisher.close(timeout=2.0)
        if self.listener is not None:
            await self.listener.close()
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.close(), 3.0)
            except Exception:  # noqa: BLE001
                self.pool.terminate()
        self.pool = self.listener = self.publisher = self.store = None

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
        assert self.store is not None
        self._heartbeat_failed(await self.store.heartbeat(self.uid, list(self.adapters)))
        self.alive = await self.store.alive(self.o.heartbeat_timeout)
        for name, adapter in list(self.adapters.items()):
            adapter.keep_only_servers(self.alive.get(name, set()))

    def _heartbeat_failed(self, names: list[str]) -> None:
        """Report namespaces whose nodes row Postgres refused (once each: they keep failing)."""
        for name in names:
            if name not in self._bad_node_rows and len(self._bad_node_rows) < 1000:
                self._bad_node_rows.add(name)
                self.report(RuntimeError(f"namespace {clip(name, 100)!s} cannot be heartbeated; other servers do not count it"))

    def retention(self) -> float:
        """How long packets (and live sessions of a dead server) are kept: the window plus
        `heartbeat_timeout`, since a crashed server's clients may have lost their connection up
        to that long after its last heartbeat (decision 6 of issue 7)."""
        if self.o.retention is not None:
            return self.o.retention + self.o.heartbeat_timeout
        windows = [a.window for a in self.adapters.values() if a.window is not None]
        return max(windows, default=120.0) + self.o.heartbeat_timeout

    async def _prune(self) -> None:
        assert self.store is not None
        retention = self.retention()
        # node rows outlive the window: live sessions of a dead server stay valid that long
        result = await self.store.prune(retention, max(60.0, 6 * self.o.heartbeat_timeout, retention + 60.0))
        self.pruned_packets += result.packets
        self.log_stats = await self.store.log_stats()

    # sessions ----------------------------------------------------------------------------
    # A socket leaving queues a _Forget: its live snapshot is deleted unless the session gets
    # persisted (a recoverable disconnect: persist_session follows within the same loop turn)
    # or the socket comes back (a restore on this server keeps the sid). Forgets wait
    # FORGET_GRACE seconds for that, so a client reconnecting elsewhere never finds a gap
    # between the live snapshot and the persisted session.
    FORGET_GRACE = 0.3

    def session_op(self, op: SessionOp) -> None:
        if isinstance(op, _Persist):
            pid = op.pid
            self._session_ops = [o for o in self._session_ops if not (isinstance(o, _Forget) and o.pid == pid)]
        self._session_ops.append(op)
        self._session_idle.clear()
        if isinstance(op, (_Persist, _Barrier)):
            self._session_wake.set()

    async def session_barrier(self) -> None:
        """Return once every session write queued before this call was attempted."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.session_op(_Barrier(done))
        await done

    async def _session_writer(self) -> None:
        while True:
            if not self._session_ops:
                self._session_idle.set()
            try:
                await asyncio.wait_for(self._session_wake.wait(), min(self.o.snapshot_interval, self.FORGET_GRACE))
            except asyncio.TimeoutError:
                pass
            self._session_wake.clear()
            if not self._session_ops:
                continue
            ops, self._session_ops = self._session_ops, []
            try:
                await self._apply_session_ops(ops)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bug, not Postgres: report, go on
                self.report(exc)
                _resolve(ops)

    async def _apply_session_ops(self, ops: list[SessionOp]) -> None:
        """Apply `ops` in order. A value Postgres refuses costs only its own socket's write
        (see _write_snapshots); when Postgres is unreachable, what was not written is kept,
        in order, for the next pass (callers waiting on a persist are released at once)."""
        assert self.store is not None
        now = asyncio.get_running_loop().time()
        forget: list[_Forget] = []
        later: list[SessionOp] = []
        dirty: dict[tuple[int, str], _Dirty] = {}
        start = 0  # ops[:start] are written (or were dropped for a bad value)
        try:
            for i, op in enumerate(ops):
                if isinstance(op, _Forget):
                    (later if now - op.at < self.FORGET_GRACE else forget).append(op)
                elif isinstance(op, _Dirty):
                    dirty[(id(op.adapter), op.sid)] = op
                else:  # persist / barrier: write what came before it first, so it lands last
                    if isinstance(op, _Persist):
                        pid = op.pid
                        forget = [f for f in forget if f.pid != pid]
                        later = [o for o in later if not (isinstance(o, _Forget) and o.pid == pid)]
                    await self._write_snapshots(dirty, forget)
                    forget, dirty = [], {}
                    start = i
                    if isinstance(op, _Persist):
                        await self._persist(op)
                    start = i + 1
                    _resolve([op])
            await self._write_snapshots(dirty, forget)
        except Exception as exc:  # noqa: BLE001
            if not is_transient(exc):
                raise
            if not self._session_failing:
                self._session_failing = True
                self.report(exc)
            keep = ops[start:]
            _resolve(keep)  # nobody waits for an outage; the writes themselves are kept
            pending = {id(o) for o in keep}
            later = [o for o in later if id(o) not in pending]
            self._session_ops[:0] = later + self._retry_ops(keep, now)
            return
        if self._session_failing:
            self._session_failing = False
            log.info("siopg postgres adapter (%s): session writes go through again", self.uid)
        if later:
            self._session_ops[:0] = later

    def _retry_ops(self, ops: list[SessionOp], now: float) -> list[SessionOp]:
        """What to keep of unwritten ops: no barriers, one persist per pid (the last), none
        past its window (nobody can recover it any more), one dirty per socket."""
        last_persist: dict[str, int] = {}
        for i, op in enumerate(ops):
            if isinstance(op, _Persist):
                last_persist[op.pid] = i
        out: list[SessionOp] = []
        seen: set[tuple[int, str]] = set()
        for i, op in enumerate(ops):
            if isinstance(op, _Barrier):
                continue
            if isinstance(op, _Persist) and (last_persist[op.pid] != i or now - op.at > op.ttl):
                continue
            if isinstance(op, _Dirty):
                key = (id(op.adapter), op.sid)
                if key in seen:
                    continue
                seen.add(key)
            out.append(op)
        return out

    async def _persist(self, op: _Persist) -> None:
        assert self.store is not None
        try:
            await self.store.persist(
                op.pid, op.sid, op.nsp, op.rooms, op.data, op.offset, op.joined, self.uid, op.ttl
            )
        except Exception as exc:  # noqa: BLE001
            if is_transient(exc):
                raise
            self.report(SessionWriteError(f"session of socket {op.sid} in {_short(op.nsp)} not saved: {_short(exc)}"))

    async def _write_snapshots(self, dirty: dict[tuple[int, str], _Dirty], forget: list[_Forget]) -> None:
        assert self.store is not None
        rows = []
        for op in dirty.values():
            adapter, sid = op.adapter, op.sid
            socket = adapter.nsp.local_socket(sid)
            pid = getattr(socket, "pid", None)
            if socket is None or not pid or adapter.window is None or pid in adapter.handing_over:
                continue
            try:
                data = codec.pack(socket.data)
            except Exception as exc:  # noqa: BLE001
                self.report(exc)
                continue
            rooms = sorted(adapter.socket_rooms(sid) or ())
            offset = _parse_offset(socket.recovery_offset)
            joined = adapter.joins_json(sid, rooms)
            rows.append((pid, sid, adapter.nsp.name, codec.json_list(rooms), data, offset, joined))
        alive = {row[0] for row in rows}
        # the socket came back here (restored: same sid) or its pid is written anew
        pids = [f.pid for f in forget if f.sid not in f.adapter.sids and f.pid not in alive]
        if not rows and not pids:
            return
        try:
            await self.store.snapshot(rows, pids, self.uid)
        except Exception as exc:  # noqa: BLE001
            if is_transient(exc):
                raise
            # a value Postgres refuses (finding 1 of issue 7): isolate the bad rows by bisection
            # so every other socket's snapshot still lands
            if pids:
                await self.store.snapshot([], pids, self.uid)
            await self._snapshot_rows(rows)

    async def _snapshot_rows(self, rows: list[Any]) -> None:
        assert self.store is not None
        if not rows:
            return
        try:
            await self.store.snapshot(rows, [], self.uid)
            return
        except Exception as exc:  # noqa: BLE001
            if is_transient(exc):
                raise
            if len(rows) == 1:
                self.report(SessionWriteError(f"session of socket {rows[0][1]} in {_short(rows[0][2])} not saved:"
                                              f" {_short(exc)}"))
                return
        mid = len(rows) // 2
        await self._snapshot_rows(rows[:mid])
        await self._snapshot_rows(rows[mid:])

    # the log -----------------------------------------------------------------------------
    def _on_row(self, row: Any) -> None:
        adapter = self.adapters.get(row["nsp"])
        if adapter is None:
            return
        target = row["target"]
        if target is not None and target != self.uid:
            return
        try:
            message = codec.decode(row)
        except Exception as exc:  # noqa: BLE001 - a row written by hand or by a newer version
            log.warning("ignored undecodable packet row %s: %s", row["id"], clip(exc))
            return
        adapter.on_message(message, str(row["id"]))

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


class PostgresNamespaceAdapter(ClusterAdapter):
    """One namespace's view of the cluster (made by `PostgresAdapter(...)(nsp)`)."""

    def __init__(self, nsp: NamespaceLike, cluster: PgCluster) -> None:
        super().__init__(nsp, cluster.uid)
        self.cluster = cluster
        self.request_timeout = cluster.o.request_timeout
        recovery = getattr(nsp, "recovery", None)
        self.window: float | None = recovery.max_disconnection_duration if recovery else None
        # per socket and room, the log offset current when it joined (decision 2 of issue 7);
        # the socket's own room (its sid) gives the session start
        self._joined: dict[str, dict[str, int]] = {}
        self._departed: dict[str, dict[str, int]] = {}  # left sockets, until their persist
        self._restored_joins: dict[str, dict[str, int]] = {}  # restored, not yet re-attached
        self._restoring_pids: dict[str, str] = {}  # sid -> pid of a restored socket
        self.handing_over: set[str] = set()  # pids being handed to another connection

    async def init(self) -> None:
        await self.cluster.register(self)

    async def close(self) -> None:
        if self._closed:
            return
        await super().close()  # publishes ADAPTER_CLOSE
        await self.cluster.unregister(self)

    # transport ---------------------------------------------------------------------------
    def do_publish(self, message: ClusterMessage) -> bool:
        return self.cluster.publish(message)

    def publish_stats(self) -> tuple[int, dict[str, int]] | None:
        """The publish buffer of this adapter's cluster (shared by its namespaces, hence the
        id to count it once): depth, bytes, refused and dropped messages, for /metrics."""
        publisher = self.cluster.publisher
        if publisher is None:
            return None
        return id(publisher), {
            "messages": publisher.pending,
            "bytes": publisher.pending_bytes,
            "refused": publisher.refused,
            "dropped": publisher.dropped,
        }

    async def other_server_ids(self) -> set[str]:
        c = self.cluster
        try:
            assert c.store is not None
            alive = await c.store.alive(c.o.heartbeat_timeout)
            c.alive = alive
        except Exception as exc:  # noqa: BLE001 - fall back to the last heartbeat's view
            c.report(exc)
            alive = c.alive
        return set(alive.get(self.nsp.name, ())) - {self.uid}

    async def server_count(self) -> int:
        c = self.cluster
        try:
            assert c.store is not None
            count = await c.store.server_count(self.nsp.name, c.o.heartbeat_timeout)
        except Exception as exc:  # noqa: BLE001
            c.report(exc)
            count = len(c.alive.get(self.nsp.name, set()) | {self.uid})
        return max(1, count)

    # rooms: keep the live session snapshot current -------------------------------------
    def add_all(self, sid: str, rooms: Any) -> None:
        if self.window is None:
            super().add_all(sid, rooms)
            return
        rooms = list(rooms)
        joins = self._joined.get(sid)
        if joins is None:
            joins = self._joined[sid] = {}
        restored = self._restored_joins.pop(sid, None)  # restored rooms keep their join offsets
        listener = self.cluster.listener
        head = listener.last_id if listener is not None else 0
        current = self.sids.get(sid) or ()
        for room in rooms:
            if room not in current or room not in joins:
                joins[room] = restored.get(room, head) if restored else head
        super().add_all(sid, rooms)
        self.cluster.session_op(_Dirty(self, sid))

    def delete(self, sid: str, room: str) -> None:
        super().delete(sid, room)
        if self.window is not None:
            joins = self._joined.get(sid)
            if joins is not None:
                joins.pop(room, None)
            self.cluster.session_op(_Dirty(self, sid))

    def delete_all(self, sid: str) -> None:
        if self.window is not None:
            restoring = self._restoring_pids.pop(sid, None)  # restored, maybe never connected
            pid = getattr(self.nsp.local_socket(sid), "pid", None) or restoring
            if pid:
                # the socket left: drop its live snapshot (a recoverable disconnect persists
                # the session right after, through the same ordered queue)
                self.cluster.session_op(_Forget(self, sid, pid, asyncio.get_running_loop().time()))
            joins = self._joined.pop(sid, None)
            if joins is not None:
                # persist_session runs a moment later (a task): keep the join offsets for it
                self._departed[sid] = joins
                self._later(5.0, self._drop_departed, sid, joins)
        super().delete_all(sid)

    def _drop_departed(self, sid: str, joins: dict[str, int]) -> None:
        if self._departed.get(sid) is joins:
            del self._departed[sid]

    def joins_json(self, sid: str, rooms: list[str]) -> str | None:
        """The JSON {room: join offset} of a live socket's `rooms` (None: not tracked)."""
        joins = self._joined.get(sid)
        if joins is None:
            return None
        return json.dumps({room: joins[room] for room in rooms if room in joins})

    # connection state recovery -----------------------------------------------------------
    @property
    def supports_recovery(self) -> bool:
        return self.window is not None

    def current_offset(self) -> str | None:
        if self.window is None or self.cluster.listener is None:
            return None
        return str(self.cluster.listener.last_id)

    async def persist_session(self, session: Session) -> None:
        if self.window is None or self.cluster.store is None:
            return
        sid = session.sid
        joins = self._restored_joins.pop(sid, None) or self._joined.get(sid) or self._departed.pop(sid, None)
        await self._persist(session, joins)

    async def _persist(self, session: Session, joins: dict[str, int] | None) -> None:
        assert self.window is not None
        try:
            data = codec.pack(session.data)
        except Exception as exc:  # noqa: BLE001 - the client will just get a fresh session
            self.cluster.report(exc)
            return
        rooms = list(session.rooms)
        joined = json.dumps({r: joins[r] for r in rooms if r in joins}) if joins is not None else None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.cluster.session_op(_Persist(
            session.pid, session.sid, self.nsp.name, rooms, data, _parse_offset(session.offset), joined,
            self.window, loop.time(), done,
        ))
        await done

    # takeover (decision 3 of issue 7) ----------------------------------------------------
    def on_session_takeover(self, message: ClusterMessage) -> None:
        data = message.data
        sid, pid, request_id = data.get("sid"), data.get("pid"), str(data.get("requestId"))
        if not isinstance(sid, str) or not isinstance(pid, str):
            raise ValueError("a session takeover names a sid and a pid")
        requester = message.uid

        async def answer() -> None:
            handed = False
            try:
                handed = await self.hand_over(sid, pid)
            finally:
                self.publish_response(
                    requester, MessageType.SESSION_TAKEOVER_RESPONSE, {"requestId": request_id, "value": handed}
                )

        task = asyncio.get_running_loop().create_task(answer())
        self._tasks.add(task)  # keep a reference until done (asyncio holds tasks weakly)
        task.add_done_callback(self._tasks.discard)

    async def hand_over(self, sid: str, pid: str) -> bool:
        """Another connection presents `pid`: if this server holds that socket, write its final
        state (rooms, data, join offsets) as a persisted session and close its Engine.IO
        connection, so its client notices; True if it did. Either way, the session writes
        queued before return first (a persist in flight lands before the answer)."""
        socket = self.nsp.local_socket(sid)
        if socket is None or getattr(socket, "pid", None) != pid or self.window is None:
            await self.cluster.session_barrier()
            return False
        rooms = sorted(self.socket_rooms(sid) or ())
        session = Session(sid, pid, self.nsp.name, rooms, socket.data, socket.recovery_offset)
        joins = dict(self._joined.get(sid) or {})
        self.handing_over.add(pid)
        try:
            _close_connection(socket)
            await self._persist(session, joins)
        finally:
            self.handing_over.discard(pid)
        return True

    async def _ask_owner(self, owner: str, sid: str, pid: str) -> bool:
        """Ask `owner` to hand the session over; False when it did not answer in time."""
        if owner == self.uid:
            await self.hand_over(sid, pid)
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()

        def done(responses: list[Any], complete: bool) -> None:
            if not future.done():
                future.set_result(complete)

        request_id = self._start_request(MessageType.SESSION_TAKEOVER, {owner}, done, self.cluster.o.takeover_timeout)
        self.do_publish(self._message(
            MessageType.SESSION_TAKEOVER, {"requestId": request_id, "sid": sid, "pid": pid}, target=owner
        ))
        return await future

    # restore -----------------------------------------------------------------------------
    async def restore_session(self, pid: str, offset: str | None) -> RestoredSession | None:
        c = self.cluster
        if self.window is None or c.store is None or c.listener is None:
            return None
        if not isinstance(pid, str) or not 0 < len(pid) <= 128 or "\x00" in pid or not _encodable(pid):
            return None
        client_offset: int | None = None
        if offset is not None:
            client_offset = _parse_offset(offset)
            if client_offset is None:
                return None  # not an offset we hand out: forged or garbled
        # Postgres unreachable: wait for it up to restore_timeout, then tell the server to
        # close the client's connection (it comes back later), never a fresh session instead
        loop = asyncio.get_running_loop()
        deadline = loop.time() + c.o.restore_timeout
        delay = 0.05
        while True:
            try:
                # asyncio.timeout, not wait_for: no extra task, so the caller attaches the
                # socket in the same loop step as the replay ends (no live row in between)
                async with asyncio.timeout_at(deadline):
                    return await self._restore(pid, client_offset)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                if not is_transient(exc):
                    c.report(exc)  # a bug or a value Postgres refuses: a fresh session, not a crash
                    return None
                if loop.time() + delay >= deadline or c.store is None:
                    c.report(exc)
                    raise RecoveryUnavailable(f"session store unreachable: {type(exc).__name__}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _restore(self, pid: str, client_offset: int | None) -> RestoredSession | None:
        c = self.cluster
        store, listener = c.store, c.listener
        if store is None or listener is None or c.pool is None:
            raise ConnectionError("the Postgres adapter is restarting")
        if client_offset is not None and client_offset > listener.last_id:
            # this process has not read that far yet: wait, or the live stream would repeat
            # rows the replay already holds (a forged offset is refused without waiting)
            if not await store.offset_exists(c.pool, client_offset, self.nsp.name):
                return None
            if not await listener.wait_for(client_offset, 2.0):
                _raise_if_reader_down(listener)
                return None
        waited = asked = False
        window = self.window or 0.0
        for _attempt in range(6):
            takeover: tuple[str, str] | None = None
            async with c.pool.acquire() as conn:
                # read the reader's position BEFORE the snapshot: every row up to it is then
                # visible to the snapshot (rows the reader handled are committed)
                upto = listener.last_id
                tx = conn.transaction(isolation="repeatable_read")
                await tx.start()
                try:
                    session = await store.read_session(conn, pid, self.nsp.name, c.o.heartbeat_timeout, window)
                    if session is None or not session["valid"]:
                        await tx.rollback()
                        return None
                    if session["live"] and not asked and (session["owner"] == self.uid or session["owner_alive"]):
                        # its socket may be connected right now: a takeover, never a clone
                        await tx.rollback()
                        takeover = (session["owner"], session["sid"])
                    else:
                        joined = _load_joins(session["joined"])
                        start = joined.get(session["sid"]) if joined is not None else None
                        base = client_offset if client_offset is not None else session["offset"]
                        if base is not None and start is not None and base < start:
                            base = start  # nothing older than the session itself
                        if base is None or base < await store.pruned_through(conn):
                            await tx.rollback()
                            return None  # packets after that offset may be gone: cannot recover exactly
                        if client_offset is not None and client_offset == base and client_offset != session["offset"]:
                            if not await store.offset_exists(conn, client_offset, self.nsp.name):
                                await tx.rollback()  # refused without using up the session
                                return None  # not a packet of this namespace
                        if base > upto:
                            await tx.rollback()  # keep the session; wait for the reader, then retry
                            if not waited and await listener.wait_for(base, 2.0):
                                waited = True
                                continue
                            _raise_if_reader_down(listener)
                            return None
                        rooms = list(session["rooms"])
                        since = [joined.get(r, 0) if joined is not None else 0 for r in rooms]
                        await store.claim(conn, pid, self.uid)  # ours now, live: one atomic step
                        rows = list(await store.missed(conn, self.nsp.name, base, upto, rooms, since))
                        await tx.commit()
                except BaseException as exc:
                    try:
                        await tx.rollback()
                    except Exception:  # noqa: BLE001
                        pass
                    if isinstance(exc, asyncpg.SerializationError):
                        continue  # the session row changed under us (its old server wrote it): retry
                    raise
            if takeover is not None:
                await self._ask_owner(*takeover, pid)
                asked = True
                continue
            # rows the reader handled meanwhile went to no socket of this session: add them
            while listener.last_id > upto:
                newer = listener.last_id
                rows.extend(await store.missed(c.pool, self.nsp.name, upto, newer, rooms, since))
                upto = newer
            missed = []
            for row in rows:
                try:
                    args = codec.decode(row).data.get("packet")
                except Exception:  # noqa: BLE001
                    continue
                if isinstance(args, list) and args:
                    missed.append(Packet(PacketType.EVENT, self.nsp.name, [*args, str(row["id"])]))
            data = codec.unpack(session["data"]) if session["data"] is not None else {}
            sid = session["sid"]
            if joined is not None:
                self._restored_joins[sid] = {r: joined.get(r, 0) for r in rooms}
            self._restoring_pids[sid] = pid
            return RestoredSession(sid=sid, pid=pid, rooms=rooms, data=data, missed_packets=missed)
        return None


def _raise_if_reader_down(listener: LogListener) -> None:
    """The log reader is behind: while it is disconnected that is transient (wait, retry);
    otherwise the offset is not one this reader will reach soon."""
    if not listener.connected.is_set():
        raise ConnectionError("the log reader is reconnecting")


def _load_joins(raw: Any) -> dict[str, int] | None:
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        return None
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _close_connection(socket: Any) -> None:
    """Close the Engine.IO connection a socket rides on; its client notices and reconnects."""
    client = getattr(socket, "client", None)
    close = getattr(client, "_close", None)
    if close is not None:
        close("forced server close")
    else:
        socket.conn.close()


async def _light_reset(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset round trip (RESET ALL; UNLISTEN *; ...):
    pool connections never LISTEN, change settings or hold session-level locks."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _parse_offset(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= _MAX_OFFSET else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
        return number if number <= _MAX_OFFSET else None
    return None
