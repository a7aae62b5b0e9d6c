"""Emit to a siopg cluster from a process that runs no server (a Django view, a Celery task).

    emitter = siopg.Emitter(dsn)                      # schema="siopg", namespace "/"
    emitter.to("room").emit("ev", {"a": 1})           # plain code: runs now, returns the offset
    await emitter.of("/chat").except_("x").emit("ev") # inside a running event loop: awaitable

Every method works both ways: called with no running event loop it does its work before
returning (one short connection per call unless `connect()` was used); called inside a
running loop it returns an awaitable. Packets are written to the same log as the servers'
broadcasts (same batching SQL function, same ordering lock), so connected clients get them
with an offset and recovering clients get them replayed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Iterable

import asyncpg

from siopg.adapter.cluster import EMITTER_UID, ClusterMessage, MessageType, encode_opts
from siopg.adapter.base import BroadcastFlags, BroadcastOptions
from siopg.adapter.postgres import codec
from siopg.adapter.postgres.migrations import DEFAULT_SCHEMA, quote_ident, validate_schema

RESERVED_EVENTS = frozenset(("connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"))


class _Conn:
    """The emitter's connection, shared by every derived emitter (reopened per event loop)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = validate_schema(schema)
        self.sql = f"SELECT {quote_ident(schema)}.publish_batch($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb[])"
        self.conn: asyncpg.Connection | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def publish(self, rows: list[codec.EncodedRow]) -> list[int]:
        batch = codec.RowBatch()
        for row in rows:
            batch.add(row)
        loop = asyncio.get_running_loop()
        if self.conn is not None and self.loop is loop and not self.conn.is_closed():
            return list(await self.conn.fetchval(self.sql, *batch.args(EMITTER_UID)) or [])
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetchval(self.sql, *batch.args(EMITTER_UID)) or [])
        finally:
            await conn.close()


def _maybe_sync(coro: Awaitable[Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return coro


class Emitter:
    """Builder like socket.io-postgres-emitter: `of`, `to`/`in_`, `except_`, `volatile`, then an action."""

    def __init__(self, dsn: str, schema: str = DEFAULT_SCHEMA, nsp: str = "/") -> None:
        self._c = _Conn(dsn, schema)
        self._nsp = nsp
        self._rooms: frozenset[str] = frozenset()
        self._except: frozenset[str] = frozenset()
        self._volatile = False

    def _copy(self, **changes: Any) -> "Emitter":
        new = object.__new__(Emitter)
        new._c, new._nsp, new._rooms, new._except, new._volatile = (
            self._c, self._nsp, self._rooms, self._except, self._volatile,
        )
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    # builders ----------------------------------------------------------------------------
    def of(self, nsp: str) -> "Emitter":
        if not isinstance(nsp, str) or not nsp.startswith("/"):
            raise ValueError("a namespace name starts with '/'")
        return self._copy(_nsp=nsp, _rooms=frozenset(), _except=frozenset())

    def to(self, room: str | Iterable[str]) -> "Emitter":
        return self._copy(_rooms=self._rooms | _rooms(room))

    in_ = to

    def except_(self, room: str | Iterable[str]) -> "Emitter":
        return self._copy(_except=self._except | _rooms(room))

    @property
    def volatile(self) -> "Emitter":
        return self._copy(_volatile=True)

    # actions -----------------------------------------------------------------------------
    def emit(self, event: str, *args: Any) -> Any:
        """Send `event` to the selected sockets; returns the packet's offset (an int)."""
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
    async def connect(self) -> "Emitter":
        """Keep one connection open (for many emits from one event loop); `close()` ends it."""
        if self._c.conn is None or self._c.conn.is_closed():
            self._c.conn = await asyncpg.connect(self._c.dsn)
            self._c.loop = asyncio.get_running_loop()
        return self

    async def close(self) -> None:
        conn, self._c.conn = self._c.conn, None
        if conn is not None:
            await conn.close()

    async def __aenter__(self) -> "Emitter":
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
