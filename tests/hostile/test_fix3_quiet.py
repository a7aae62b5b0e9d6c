"""A quiet session recovers after the log was pruned past it, and never with a silent gap.

A client that received nothing recoverable for longer than the packet retention (it sits in
a quiet room while others talk) has a replay base older than `pruned_through`. It used to be
refused (a fresh session on its first network blip). Every pruned packet was written while
its connection was alive, though, so it missed none of them: a restore is now refused only
if a pruned packet was written after the client's transport was last known alive, i.e.
after D - S (D: the disconnect as the server saw it, or the last heartbeat of its crashed
server; S: `dead_transport_bound`, ping_interval + ping_timeout + heartbeat_interval + 2 s).

Real `siopg serve` processes of tests/pg/apps/cluster_app.py (ping 1 + 2 s, heartbeat 0.5 s:
S = 5.5 s), the official JS client, a real Postgres; time is moved on by ageing rows, and a
prune with a short retention stands for a retention that passed.
"""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from pg.harness import SwitchProxy, eventually

from siopg.adapter.base import Session
from siopg.adapter.errors import RecoveryRefused
from siopg.adapter.memory import InMemoryAdapter
from siopg.adapter.postgres.migrations import quote_ident
from siopg.server.options import Recovery

from .pgsession_support import (  # noqa: F401
    client,
    js,
    node_driver,
    nodes,
    procs,
    schema,
    session_row,
    wait_rooms,
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _quiet_and_chatter(js: Any, proxy: SwitchProxy, direct_url: str, pg_dsn: str, schema: str,  # noqa: F811
                             db: asyncpg.Connection, q: str) -> tuple[Any, Any, int]:
    """A quiet client in room "q" (through `proxy`) and 5 packets to room "busy" after it
    connected; returns (quiet, talker, id of the last busy packet)."""
    quiet = await client(js, proxy.url, "quiet", auth={"rooms": ["q"]})
    await quiet.on("ev")
    await wait_rooms(pg_dsn, schema, quiet.sid, "q")
    talker = await client(js, direct_url, "talker")
    for i in range(5):
        await talker.emit("emit", "busy", "chatter", i)
    last = await eventually(lambda: _max_id(db, q, 5), timeout=5)
    return quiet, talker, last


async def _max_id(db: asyncpg.Connection, q: str, count: int) -> int | None:
    row = await db.fetchrow(f"SELECT count(*) AS n, max(id) AS last FROM {q}.packets WHERE recoverable")
    return row["last"] if row["n"] >= count else None


async def _prune(nodes: Any, db: asyncpg.Connection, q: str, older_than: int | None,  # noqa: F811
                 retention: float) -> int:
    """Age the packets up to id `older_than` by 30 s (None: none), prune with `retention`;
    returns pruned_through."""
    if older_than is not None:
        await db.execute(f"UPDATE {q}.packets SET created_at = now() - interval '30 seconds' WHERE id <= $1",
                         older_than)
    pruner = await nodes("P", heartbeat_timeout=2.0)
    await pruner.factory.cluster.store.prune(retention, 3600)
    return await db.fetchval(f"SELECT pruned_through FROM {q}.log_state")


async def test_quiet_persisted_session_recovers_after_pruning(procs: Any, nodes: Any, js: Any,  # noqa: F811
                                                              pg_dsn: str, schema: str) -> None:  # noqa: F811
    a = await procs("A")
    proxy = await SwitchProxy(a.port).start()
    db = await asyncpg.connect(pg_dsn)
    q = quote_ident(schema)
    try:
        quiet, talker, last_busy = await _quiet_and_chatter(js, proxy, a.url, pg_dsn, schema, db, q)
        proxy.target = _closed_port()  # a network blip that lasts: its reconnects fail for now
        proxy.cut_all()

        async def persisted() -> Any:
            row = await session_row(pg_dsn, schema, quiet.sid)
            return row if row is not None and row["expires_at"] is not None else None

        await eventually(persisted, timeout=10)
        await talker.emit("emit", "q", "ev", "while away")
        await eventually(lambda: _max_id(db, q, 6), timeout=5)
        # the busy packets are 30 s old (written while the quiet client was connected), pruned
        assert await _prune(nodes, db, q, last_busy, 10.0) >= last_busy
        proxy.target = a.port
        state = await quiet.reconnect(timeout_ms=15000)
        assert state["recovered"] is True and state["id"] == quiet.sid, state
        got = await quiet.wait_for("ev")
        assert [x[:-1] for x in got] == [["while away"]]
    finally:
        await db.close()
        await proxy.close()


async def test_quiet_live_session_of_a_crashed_server_recovers_after_pruning(
        procs: Any, nodes: Any, js: Any, pg_dsn: str, schema: str) -> None:  # noqa: F811
    a, b = await procs("A"), await procs("B")
    proxy = await SwitchProxy(a.port).start()
    db = await asyncpg.connect(pg_dsn)
    q = quote_ident(schema)
    try:
        quiet, talker, last_busy = await _quiet_and_chatter(js, proxy, b.url, pg_dsn, schema, db, q)
        a.kill()  # its live session row stays; D is A's last heartbeat
        await talker.emit("emit", "q", "ev", "while away")
        await eventually(lambda: _max_id(db, q, 6), timeout=5)
        assert await _prune(nodes, db, q, last_busy, 10.0) >= last_busy
        proxy.target = b.port
        await eventually(lambda: _disconnected(quiet), timeout=10)
        state = await quiet.reconnect(timeout_ms=15000)
        assert state["recovered"] is True and state["id"] == quiet.sid, state
        got = await quiet.wait_for("ev")
        assert [x[:-1] for x in got] == [["while away"]]
    finally:
        await db.close()
        await proxy.close()


async def test_a_pruned_packet_the_client_may_have_missed_means_a_fresh_session(
        procs: Any, nodes: Any, js: Any, pg_dsn: str, schema: str) -> None:  # noqa: F811
    """The packet sent to the quiet client after its server crashed is pruned too (written
    after D - S): recovering would be a silent gap, so the client gets a fresh session."""
    a, b = await procs("A"), await procs("B")
    proxy = await SwitchProxy(a.port).start()
    db = await asyncpg.connect(pg_dsn)
    q = quote_ident(schema)
    try:
        quiet, talker, _ = await _quiet_and_chatter(js, proxy, b.url, pg_dsn, schema, db, q)
        a.kill()
        await talker.emit("emit", "q", "ev", "while away")
        away = await eventually(lambda: _max_id(db, q, 6), timeout=5)
        assert await _prune(nodes, db, q, None, 0.0) >= away  # everything, the new packet too
        proxy.target = b.port
        await eventually(lambda: _disconnected(quiet), timeout=10)
        state = await quiet.reconnect(timeout_ms=15000)
        assert state["connected"] and state["recovered"] is False and state["id"] != quiet.sid, state
    finally:
        await db.close()
        await proxy.close()


async def _disconnected(c: Any) -> bool:
    return not (await c.state())["connected"]


# the in-memory adapter: its log is pruned too, same rule ---------------------------------

class _Nsp:
    """The NamespaceLike an InMemoryAdapter sees, with a server whose pings are 1 + 1 s."""

    name = "/"

    def __init__(self) -> None:
        self.recovery = Recovery(max_disconnection_duration=10.0)
        self.server = SimpleNamespace(engine=SimpleNamespace(options=SimpleNamespace(ping_interval=1.0,
                                                                                     ping_timeout=1.0)))

    def deliver(self, *args: Any) -> None:
        pass

    def local_socket(self, sid: str) -> Any:
        return None


def _memory_case() -> tuple[InMemoryAdapter, Any]:
    from siopg.adapter.base import BroadcastFlags, BroadcastOptions
    from siopg.parser import Packet, PacketType

    a = InMemoryAdapter(_Nsp())  # type: ignore[arg-type]

    def emit(room: str | None, text: str) -> None:
        rooms = frozenset((room,)) if room else frozenset()
        a.broadcast(Packet(PacketType.EVENT, "/", ["ev", text]), BroadcastOptions(rooms, frozenset(), BroadcastFlags()))

    a.add_all("s", ["s", "q"])
    return a, emit


def _age(a: InMemoryAdapter, upto: int, at: float) -> None:
    a._log = type(a._log)(e._replace(at=at) if e.offset <= upto else e for e in a._log)


async def test_memory_quiet_session_recovers_after_pruning() -> None:
    a, emit = _memory_case()
    emit(None, "hello")  # 1: the client got it (its offset is "1")
    for i in range(3):
        emit("busy", f"chatter {i}")  # 2..4, not for it
    joins = a.join_offsets("s")
    await a.persist_session(Session("s", "p", "/", ["s", "q"], None, offset="0", join_offsets=joins))
    emit("q", "while away")  # 5
    _age(a, 4, time.monotonic() - 100)  # written long before the disconnect, while connected
    a._prune_log(time.monotonic())  # (as on the next append)
    assert [e.offset for e in a._log] == [5]
    restored = await a.restore_session("p", "1")
    assert restored is not None  # used to be refused: the client's offset 1 < the log's start
    assert [p.data[:-1] for p in restored.missed_packets] == [["ev", "while away"]]


async def test_memory_pruned_packet_after_the_transport_was_last_alive_refuses() -> None:
    a, emit = _memory_case()
    joins = a.join_offsets("s")
    await a.persist_session(Session("s", "p", "/", ["s", "q"], None, offset="0", join_offsets=joins))
    persisted_at = a._sessions["p"][1]
    emit("q", "sent as the connection died")  # 1
    emit("q", "while away")  # 2
    # the first was logged 1 s before the disconnect was noticed: within S of it, so the dead
    # connection may never have carried it; the log is pruned up to it (as 14 s later)
    _age(a, 1, persisted_at - 1.0)
    a._prune_log(persisted_at - 1.0 + 10.0 + 4.0 + 0.1)
    assert [e.offset for e in a._log] == [2]
    with pytest.raises(RecoveryRefused) as refused:  # no silent gap: a fresh session
        await a.restore_session("p", None)
    assert refused.value.cause == "offset_pruned"
