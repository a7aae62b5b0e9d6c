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
import logging
import secrets
from typing import Any, Callable

import asyncpg

from siopg.adapter.base import NamespaceLike, RestoredSession, Session
from siopg.adapter.cluster import ClusterAdapter, ClusterMessage
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
from siopg.adapter.postgres.store import Store
from siopg.parser import Packet, PacketType

log = logging.getLogger("siopg.adapter.postgres")

ErrorHandler = Callable[[BaseException], Any]
_MAX_OFFSET = 2**63 - 1


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
        # session writes, applied in order by one task: ("dirty", adapter, sid), ("forget", pid),
        # ("persist", args, future)
        self._session_ops: list[tuple[Any, ...]] = []
        self._session_wake = asyncio.Event()
        self._session_idle = asyncio.Event()
        self._session_idle.set()

    # errors ------------------------------------------------------------------------------
    def report(self, exc: BaseException) -> None:
        self.errors += 1
        log.error("siopg postgres adapter (%s): %s: %s", self.uid, type(exc).__name__, exc)
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
            await self.store.heartbeat(self.uid, [adapter.nsp.name])  # counts at once

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
        await self.store.heartbeat(self.uid, list(self.adapters))
        self.alive = await self.store.alive(self.o.heartbeat_timeout)
        for name, adapter in list(self.adapters.items()):
            adapter.keep_only_servers(self.alive.get(name, set()))

    def retention(self) -> float:
        if self.o.retention is not None:
            return self.o.retention
        windows = [a.window for a in self.adapters.values() if a.window is not None]
        return max(windows, default=120.0)

    async def _prune(self) -> None:
        assert self.store is not None
        retention = self.retention()
        # node rows outlive the window: live sessions of a dead server stay valid that long
        await self.store.prune(retention, max(60.0, 6 * self.o.heartbeat_timeout, retention + 60.0))

    # sessions ----------------------------------------------------------------------------
    # A socket leaving queues ("forget", pid, t): its live snapshot is deleted unless the
    # session gets persisted (a recoverable disconnect: persist_session follows within the
    # same loop turn) or the pid comes back (a restore on this server). Forgets wait
    # FORGET_GRACE seconds for that, so a client reconnecting elsewhere never finds a gap
    # between the live snapshot and the persisted session.
    FORGET_GRACE = 0.3

    def session_op(self, *op: Any) -> None:
        if op[0] == "persist":
            pid = op[1][0]
            self._session_ops = [o for o in self._session_ops if not (o[0] == "forget" and o[1] == pid)]
        self._session_ops.append(op)
        self._session_idle.clear()
        if op[0] == "persist":
            self._session_wake.set()

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
            except Exception as exc:  # noqa: BLE001 - sessions are best effort; report
                self.report(exc)
                for op in ops:
                    if op[0] == "persist" and not op[2].done():
                        op[2].set_result(None)

    async def _apply_session_ops(self, ops: list[tuple[Any, ...]]) -> None:
        assert self.store is not None
        now = asyncio.get_running_loop().time()
        forget: list[str] = []
        later: list[tuple[Any, ...]] = []
        dirty: dict[tuple[int, str], tuple[Any, str]] = {}
        for op in ops:
            if op[0] == "forget":
                if now - op[2] < self.FORGET_GRACE:
                    later.append(op)
                else:
                    forget.append(op[1])
            elif op[0] == "dirty":
                dirty[(id(op[1]), op[2])] = (op[1], op[2])
            else:  # persist: write what came before it first, so it lands last
                pid = op[1][0]
                forget = [p for p in forget if p != pid]
                later = [o for o in later if o[1] != pid]
                await self._write_snapshots(dirty, forget)
                forget, dirty = [], {}
                try:
                    await self.store.persist(*op[1])
                finally:
                    if not op[2].done():
                        op[2].set_result(None)
        await self._write_snapshots(dirty, forget)
        if later:
            self._session_ops[:0] = later

    async def _write_snapshots(self, dirty: dict[tuple[int, str], tuple[Any, str]], forget: list[str]) -> None:
        rows = []
        for adapter, sid in dirty.values():
            socket = adapter.nsp.local_socket(sid)
            pid = getattr(socket, "pid", None)
            if socket is None or not pid or adapter.window is None:
                continue
            try:
                data = codec.pack(socket.data)
            except Exception as exc:  # noqa: BLE001
                self.report(exc)
                continue
            rooms = adapter.socket_rooms(sid) or set()
            offset = _parse_offset(socket.recovery_offset)
            rows.append((pid, sid, adapter.nsp.name, codec.json_list(sorted(rooms)), data, offset))
        alive = {row[0] for row in rows}
        forget = [pid for pid in forget if pid not in alive]  # the pid came back here
        if rows or forget:
            await self.store.snapshot(rows, forget, self.uid)

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
            log.warning("ignored undecodable packet row %s: %s", row["id"], exc)
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
        super().add_all(sid, rooms)
        if self.window is not None:
            self.cluster.session_op("dirty", self, sid)

    def delete(self, sid: str, room: str) -> None:
        super().delete(sid, room)
        if self.window is not None:
            self.cluster.session_op("dirty", self, sid)

    def delete_all(self, sid: str) -> None:
        if self.window is not None:
            pid = getattr(self.nsp.local_socket(sid), "pid", None)
            if pid:
                # the socket left: drop its live snapshot (a recoverable disconnect persists
                # the session right after, through the same ordered queue)
                self.cluster.session_op("forget", pid, asyncio.get_running_loop().time())
        super().delete_all(sid)

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
        try:
            data = codec.pack(session.data)
        except Exception as exc:  # noqa: BLE001 - the client will just get a fresh session
            self.cluster.report(exc)
            return
        offset = _parse_offset(session.offset)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        args = (session.pid, session.sid, self.nsp.name, list(session.rooms), data, offset, self.uid, self.window)
        self.cluster.session_op("persist", args, done)
        await done

    async def restore_session(self, pid: str, offset: str | None) -> RestoredSession | None:
        c = self.cluster
        if self.window is None or c.store is None or c.listener is None:
            return None
        if not isinstance(pid, str) or not 0 < len(pid) <= 128 or "\x00" in pid:
            return None
        client_offset: int | None = None
        if offset is not None:
            client_offset = _parse_offset(offset)
            if client_offset is None:
                return None  # not an offset we hand out: forged or garbled
        try:
            return await self._restore(pid, client_offset)
        except Exception as exc:  # noqa: BLE001 - Postgres trouble: a fresh session, not a crash
            c.report(exc)
            return None

    async def _restore(self, pid: str, client_offset: int | None) -> RestoredSession | None:
        c = self.cluster
        store, listener = c.store, c.listener
        assert store is not None and listener is not None and c.pool is not None
        if client_offset is not None and client_offset > listener.last_id:
            # this process has not read that far yet: wait, or the live stream would repeat
            # rows the replay already holds (a forged offset is refused without waiting)
            if not await store.offset_exists(c.pool, client_offset, self.nsp.name):
                return None
            if not await listener.wait_for(client_offset, 2.0):
                return None
        waited = False
        for _attempt in range(4):
            async with c.pool.acquire() as conn:
                # read the reader's position BEFORE the snapshot: every row up to it is then
                # visible to the snapshot (rows the reader handled are committed)
                upto = listener.last_id
                tx = conn.transaction(isolation="repeatable_read")
                await tx.start()
                try:
                    session = await store.take_session(conn, pid, self.nsp.name, self.window or 0.0)
                    if session is None or not session["valid"]:
                        await tx.commit()
                        return None
                    base = client_offset if client_offset is not None else session["offset"]
                    if base is None or base < await store.pruned_through(conn):
                        await tx.commit()
                        return None  # packets after that offset may be gone: cannot recover exactly
                    if client_offset is not None and client_offset != session["offset"]:
                        if not await store.offset_exists(conn, client_offset, self.nsp.name):
                            await tx.rollback()  # refused without using up the session
                            return None  # not a packet of this namespace
                    if base > upto:
                        await tx.rollback()  # keep the session; wait for the reader, then retry
                        if not waited and await listener.wait_for(base, 2.0):
                            waited = True
                            continue
                        return None
                    rooms = list(session["rooms"])
                    rows = list(await store.missed(conn, self.nsp.name, base, upto, rooms))
                    await tx.commit()
                except BaseException as exc:
                    try:
                        await tx.rollback()
                    except Exception:  # noqa: BLE001
                        pass
                    if isinstance(exc, asyncpg.SerializationError):
                        continue  # the session row changed under us (its old server wrote it): retry
                    raise
            # rows the reader handled meanwhile went to no socket of this session: add them
            while listener.last_id > upto:
                newer = listener.last_id
                rows.extend(await store.missed(c.pool, self.nsp.name, upto, newer, rooms))
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
            return RestoredSession(sid=session["sid"], pid=pid, rooms=rooms, data=data, missed_packets=missed)
        return None


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
