"""Emit to a siopg cluster from a process that runs no server (a Django view, a Celery task).

    emitter = siopg.Emitter(dsn)                      # schema="siopg", namespace "/"
    emitter.to("room").emit("ev", {"a": 1})           # plain code: runs now, returns the offset
    await emitter.of("/chat").except_("x").emit("ev") # inside a running event loop: awaitable

Every method works both ways: called with no running event loop it does its work before
returning (one short connection per call unless `connect()` was used); called inside a
running loop it returns an awaitable. Packets are written to the same log as the servers'
broadcasts (same batching SQL function, same ordering lock), so connected clients get them
with an offset and recovering clients get them replayed.

Each action is idempotent and confirmed: it carries a random key written with the packet,
and a failure with an unknown outcome (connection lost, timeout, Postgres restarting) is
retried with the same key, so a packet whose commit reply was lost is never written twice.
An action returns once its packet is in the log; if that cannot be confirmed within
`attempts` tries it raises `EmitNotConfirmed` (the packet is then in the log once, or not
at all). Data Postgres refuses, or a schema that is not migrated, raise at once.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Iterable
from typing import Any

import asyncpg

from siopg.adapter.base import BroadcastFlags, BroadcastOptions
from siopg.adapter.cluster import EMITTER_UID, ClusterMessage, MessageType, encode_opts
from siopg.adapter.errors import EmitNotConfirmed
from siopg.adapter.postgres import codec
from siopg.adapter.postgres.migrations import (
    DEFAULT_SCHEMA,
    quote_ident,
    validate_schema,
)
from siopg.names import (
    RESERVED_EVENTS,  # the one list (re-exported: siopg.emitter.RESERVED_EVENTS)
)


def _unknown_outcome(exc: BaseException) -> bool:
    """True for failures after which the emit may or may not have landed (retry with the key):
    lost connections, timeouts, Postgres shutting down / starting / overloaded."""
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError)):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return not isinstance(exc, ValueError)  # a ValueError one is bad input: nothing sent
    if isinstance(exc, asyncpg.PostgresError):
        # 57: shutdown, cancel, cannot connect now; 53: out of resources; 40: retry the transaction
        return str(getattr(exc, "sqlstate", ""))[:2] in ("57", "53", "40", "08")
    return False


class _Conn:
    """The emitter's connection, shared by every derived emitter (reopened per event loop)."""

    def __init__(self, dsn: str, schema: str, attempts: int, timeout: float) -> None:
        self.dsn = dsn
        self.schema = validate_schema(schema)
        self.sql = (
            f"SELECT {quote_ident(schema)}.publish_batch_once($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb[])"
        )
        self.conn: asyncpg.Connection | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.keep = False  # connect() was called: keep one connection for this loop
        self.attempts = max(1, attempts)
        self.timeout = timeout

    async def publish(self, rows: list[codec.EncodedRow]) -> list[int]:
        """Write `rows` as one batch, once; their offsets. Retries an unknown outcome with the
        same key (the SQL function then returns the first attempt's ids if it committed)."""
        batch = codec.RowBatch()
        for row in rows:
            batch.add(row)
        key = uuid.uuid4()
        args = (key, *batch.args(EMITTER_UID))
        last: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
            try:
                return await self._run(args)
            except asyncpg.UndefinedFunctionError as exc:
                raise RuntimeError(
                    f"siopg Emitter: the schema {self.schema!r} is not migrated to this siopg version "
                    f"(run: siopg migrate --database-url <url> --schema {self.schema})"
                ) from exc
            except Exception as exc:
                if not _unknown_outcome(exc):
                    raise  # refused for sure (bad data, permissions): nothing was written
                last = exc
        raise EmitNotConfirmed(
            f"siopg Emitter: could not confirm the emit after {self.attempts} attempts "
            f"({type(last).__name__}: {last}); it is in the log once or not at all", key
        ) from last

    async def _run(self, args: tuple[Any, ...]) -> list[int]:
        if self.keep and self.loop is asyncio.get_running_loop():  # connect() was used
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
            conn = self.conn
            try:
                return list(await conn.fetchval(self.sql, *args, timeout=self.timeout) or [])
            except Exception as exc:
                if _unknown_outcome(exc):
                    self.conn = None  # broken or in an unknown state: the next attempt reconnects
                    conn.terminate()
                raise
        conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
        try:
            ids = list(await conn.fetchval(self.sql, *args, timeout=self.timeout) or [])
        except BaseException:
            conn.terminate()
            raise
        await conn.close()
        return ids


def _maybe_sync(coro: Awaitable[Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return coro


class Emitter:
    """Builder like socket.io-postgres-emitter: `of`, `to`/`in_`, `except_`, `volatile`, then an action."""

    def __init__(
        self, dsn: str, schema: str = DEFAULT_SCHEMA, nsp: str = "/", *, attempts: int = 5, timeout: float = 10.0
    ) -> None:
        """`attempts`: tries per action before `EmitNotConfirmed` (backoff 0.1 s doubling to
        2 s between them); `timeout`: seconds per connect and per statement."""
        self._c = _Conn(dsn, schema, attempts, timeout)
        self._nsp = nsp
        self._rooms: frozenset[str] = frozenset()
        self._except: frozenset[str] = frozenset()
        self._volatile = False

    def _copy(self, **changes: Any) -> Emitter:
        new = object.__new__(Emitter)
        new._c, new._nsp, new._rooms, new._except, new._volatile = (
            self._c, self._nsp, self._rooms, self._except, self._volatile,
        )
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    # builders ----------------------------------------------------------------------------
    def of(self, nsp: str) -> Emitter:
        if not isinstance(nsp, str) or not nsp.startswith("/"):
            raise ValueError("a namespace name starts with '/'")
        return self._copy(_nsp=nsp, _rooms=frozenset(), _except=frozenset())

    def to(self, room: str | Iterable[str]) -> Emitter:
        return self._copy(_rooms=self._rooms | _rooms(room))

    in_ = to

    def except_(self, room: str | Iterable[str]) -> Emitter:
        return self._copy(_except=self._except | _rooms(room))

    @property
    def volatile(self) -> Emitter:
        return self._copy(_volatile=True)

    # actions -----------------------------------------------------------------------------
    def emit(self, event: str, *args: Any) -> Any:
        """Send `event` to the selected sockets; returns the packet's offset (an int) once it
        is in the log (exactly once); raises `EmitNotConfirmed` when that cannot be confirmed."""
        if not isinstance(event, str) or event in RESERVED_EVENTS:
            raise ValueError(f"cannot emit {event!r}: not an event name a client may receive")
        message = ClusterMessage(
            MessageType.BROADCAST, EMITTER_UID, self._nsp,
            {"packet": [event, *args], "flags": {"volatile": True} if self._volatile else {}},
            rooms=tuple(sorted(self._rooms)), except_=tuple(sorted(self._except)),
            recoverable=not self._volatile,
        )
        return _maybe_sync(self._send(message))

    def server_side_emit(self, event: str, *args: Any) -> Any:
        """Run the servers' `io.on(event)` listeners (no acknowledgement from an emitter)."""
        return _maybe_sync(self._send(ClusterMessage(
            MessageType.SERVER_SIDE_EMIT, EMITTER_UID, self._nsp, {"packet": [event, *args]}
        )))

    def sockets_join(self, room: str | Iterable[str]) -> Any:
        return _maybe_sync(self._send(ClusterMessage(
            MessageType.SOCKETS_JOIN, EMITTER_UID, self._nsp, {"opts": self._opts(), "rooms": sorted(_rooms(room))}
        )))

    def sockets_leave(self, room: str | Iterable[str]) -> Any:
        return _maybe_sync(self._send(ClusterMessage(
            MessageType.SOCKETS_LEAVE, EMITTER_UID, self._nsp, {"opts": self._opts(), "rooms": sorted(_rooms(room))}
        )))

    def disconnect_sockets(self, close: bool = False) -> Any:
        return _maybe_sync(self._send(ClusterMessage(
            MessageType.DISCONNECT_SOCKETS, EMITTER_UID, self._nsp, {"opts": self._opts(), "close": bool(close)}
        )))

    # connection --------------------------------------------------------------------------
    async def connect(self) -> Emitter:
        """Keep one connection open (for many emits from one event loop); `close()` ends it."""
        if self._c.conn is None or self._c.conn.is_closed():
            self._c.conn = await asyncpg.connect(self._c.dsn, timeout=self._c.timeout)
            self._c.loop = asyncio.get_running_loop()
        self._c.keep = True
        return self

    async def close(self) -> None:
        self._c.keep = False
        conn, self._c.conn = self._c.conn, None
        if conn is not None:
            await conn.close()

    async def __aenter__(self) -> Emitter:
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _opts(self) -> dict[str, Any]:
        return encode_opts(BroadcastOptions(self._rooms, self._except, BroadcastFlags(volatile=self._volatile)))

    async def _send(self, message: ClusterMessage) -> int:
        ids = await self._c.publish([codec.encode(message)])
        return ids[-1]


def _rooms(room: str | Iterable[str]) -> frozenset[str]:
    if isinstance(room, str):
        return frozenset((room,))
    rooms = frozenset(room)
    if not all(isinstance(r, str) for r in rooms):
        raise TypeError("room names are strings")
    return rooms
