"""Blips: the LISTEN connection killed by Postgres, and Postgres unreachable for a while.

The outage is simulated with a TCP proxy between one server and Postgres (the shared test
database is never restarted): cutting it kills every connection of that server, and while
it points nowhere no new connection can be made.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from typing import Any
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg

from .harness import Node, SwitchProxy, eventually


async def connect(js: Any, node: Any, label: str) -> Any:
    client = js.client(label)
    state = await client.connect(node.url, transports=["websocket"])
    assert state["connected"], state
    await client.on("seq")
    return client


def payloads(client: Any, name: str) -> list[int]:
    return [args[1] for args in client.received("seq") if args[0] == name]


async def test_listen_connection_terminated_mid_traffic(nodes: Any, js: Any, conn: asyncpg.Connection) -> None:
    a, b = await nodes("A"), await nodes("B")
    ca, cb = await connect(js, a, "ca"), await connect(js, b, "cb")
    n = 300
    for i in range(n):
        a.io.emit("seq", "A", i)
        b.io.emit("seq", "B", i)
        if i == 100:
            for node in (a, b):
                pid = node.factory.cluster.listener.conn.get_server_pid()
                assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        if i % 20 == 0:
            await asyncio.sleep(0.005)
    for c in (ca, cb):
        await c.wait_for("seq", 2 * n, timeout=15)
        assert payloads(c, "A") == list(range(n)) and payloads(c, "B") == list(range(n))
        offsets = [int(x[-1]) for x in c.received("seq")]
        assert offsets == sorted(offsets) and len(set(offsets)) == 2 * n
    assert a.factory.cluster.listener.reconnects >= 1 and b.factory.cluster.listener.reconnects >= 1
    for node in (a, b):
        node.errors.clear()  # the terminated connection was reported: expected


def _via(dsn: str, port: int) -> str:
    """The DSN, pointed at the proxy's loopback port (a Unix-socket `host=` is dropped)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)
    netloc = (host[0] + "@" if len(host) == 2 else "") + f"127.0.0.1:{port}"
    query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("host="))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _upstream(dsn: str) -> int | str:
    """Where Postgres listens: a TCP port, or the Unix socket of an embedded pgserver."""
    parts = urlsplit(dsn)
    socket_dir = dict(parse_qsl(parts.query)).get("host")
    if socket_dir and socket_dir.startswith("/"):
        sockets = sorted(Path(socket_dir).glob(".s.PGSQL.*"))
        sockets = [s for s in sockets if not s.name.endswith(".lock")]
        assert sockets, f"no Postgres socket in {socket_dir}"
        return str(sockets[0])
    return parts.port or 5432


async def test_postgres_unreachable_then_back(pg_dsn: str, schema: str, js: Any) -> None:
    pg_port = _upstream(pg_dsn)
    proxy = await SwitchProxy(pg_port).start()
    a = await Node(_via(pg_dsn, proxy.port), schema, "A").start()
    b = await Node(pg_dsn, schema, "B").start()
    try:
        ca, cb = await connect(js, a, "ca"), await connect(js, b, "cb")
        a.io.emit("seq", "A", 0)
        await ca.wait_for("seq")
        await cb.wait_for("seq")
        # outage for A: every connection cut, no new one possible
        proxy.target = 1
        proxy.cut_all()
        for i in range(1, 21):
            a.io.emit("seq", "A", i)
            b.io.emit("seq", "B", i)
            await asyncio.sleep(0.02)
        # A's packets wait in its publish buffer: nobody (A's own clients neither) gets them
        # ahead of the log, or a client recovering later would get them a second time
        await eventually(lambda: a.factory.cluster.publisher.pending == 20 and a.errors, timeout=5)
        assert payloads(ca, "A") == [0] and payloads(cb, "A") == [0]
        assert await a.io.server_count() >= 1  # answers from its last view, does not raise
        # Postgres is back: the retried publishes go out in order, A catches up with B's
        proxy.target = pg_port
        await cb.wait_for("seq", 41, timeout=15)
        assert payloads(cb, "A") == list(range(21)) and payloads(cb, "B") == list(range(1, 21))
        await ca.wait_for("seq", 41, timeout=15)  # A's reader may lag B's commit-order view
        assert payloads(ca, "B") == list(range(1, 21))
        assert payloads(ca, "A") == list(range(21)), "A's own packets are not delivered twice"
        for c in (ca, cb):  # every packet with its offset, in order
            offsets = [int(args[-1]) for args in c.received("seq")]
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets) == 41
        a.errors.clear()
    finally:
        await a.stop()
        await b.stop()
        await proxy.close()
    assert not b.errors


async def test_postgres_restarted_mid_traffic(js: Any) -> None:
    """A real restart (pg_ctl restart -m fast) of a private embedded PostgreSQL, twice, while
    both servers publish: every client still gets every packet of each publisher, in order."""
    import tempfile

    import pgserver

    from siopg.adapter.postgres.migrations import migrate

    data_dir = tempfile.mkdtemp(prefix="siopg-restart-pg-")
    pg = await asyncio.to_thread(pgserver.get_server, data_dir, cleanup_mode="stop")
    dsn = pg.get_uri()
    conn = await asyncpg.connect(dsn)
    await migrate(conn, "siopg")
    await conn.close()
    user = {"user": pg.system_user} if getattr(pg, "system_user", None) else {}

    def restart() -> None:
        pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pg.pgdata, timeout=30, **user)

    a = await Node(dsn, "siopg", "A").start()
    b = await Node(dsn, "siopg", "B").start()
    try:
        ca, cb = await connect(js, a, "ca"), await connect(js, b, "cb")
        n = 200
        for i in range(n):
            a.io.emit("seq", "A", i)
            b.io.emit("seq", "B", i)
            if i in (60, 140):
                await asyncio.to_thread(restart)
            await asyncio.sleep(0.005)
        for c in (ca, cb):
            await c.wait_for("seq", 2 * n, timeout=30)
            assert payloads(c, "A") == list(range(n)), c.name
            assert payloads(c, "B") == list(range(n)), c.name
        assert a.errors and b.errors, "the restarts were reported"
        assert a.factory.cluster.listener.reconnects >= 2
    finally:
        await a.stop()
        await b.stop()
        # pgserver only stops the postmaster it started; after `pg_ctl restart` that one is
        # gone, so stop the restarted server here or it outlives the test
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                pgserver.pg_ctl, ["-w", "-m", "fast", "stop"], pgdata=pg.pgdata, timeout=30, **user
            )
        await asyncio.to_thread(pg.cleanup)
        shutil.rmtree(data_dir, ignore_errors=True)
