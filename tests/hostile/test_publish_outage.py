"""Fault 4 (decision 4): events emitted while Postgres is unreachable are delivered once.

During an outage the emitting server used to deliver its broadcasts to its own clients at
once, without offsets; a client that then dropped recovered from its older offset and got
them all again. Now they wait in the publish buffer and every client, local or not, gets
them through the log with their offsets; a client that drops and recovers elsewhere gets
each event once, in order. Past the buffer's byte bound, emits are refused loudly: reported,
counted in /metrics, and delivered to nobody (not even locally, ahead of older packets).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from pg.conftest import conn, js, node_driver, schema  # noqa: F401  (fixtures)
from pg.harness import Node, SwitchProxy, eventually
from pg.test_blips import _upstream, _via, connect, payloads
from pg.test_recovery import drop

from siopg.adapter.postgres import PublishBufferFull
from siopg.adapter.postgres.migrations import quote_ident
from siopg.metrics import render


async def _head(conn: asyncpg.Connection, schema: str) -> int:  # noqa: F811
    return await conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {quote_ident(schema)}.packets")


async def test_events_of_an_outage_are_not_replayed_again(
    pg_dsn: str, schema: str, js: Any, conn: asyncpg.Connection  # noqa: F811
) -> None:
    pg_port = _upstream(pg_dsn)
    pg_proxy = await SwitchProxy(pg_port).start()  # between A and Postgres
    client_proxy = await SwitchProxy(0).start()  # the balancer in front of A and B
    a = await Node(_via(pg_dsn, pg_proxy.port), schema, "A").start()
    b = await Node(pg_dsn, schema, "B").start()
    try:
        client_proxy.target = a.port
        ca = await connect(js, client_proxy, "ca")
        cb = await connect(js, b, "cb")
        a.io.emit("seq", "A", 0)
        await ca.wait_for("seq")
        # outage for A: its Postgres connections cut, no new one possible
        pg_proxy.target = 1
        pg_proxy.cut_all()
        for i in range(1, 21):
            a.io.emit("seq", "A", i)
        await eventually(lambda: a.factory.cluster.publisher.pending == 20 and a.errors, timeout=5)
        assert payloads(ca, "A") == [0], "not delivered ahead of the log"
        # Postgres is back: the buffer drains, everyone gets the events with offsets
        pg_proxy.target = pg_port
        assert await a.factory.cluster.publisher.flush(15)
        await cb.wait_for("seq", 21, timeout=15)
        await ca.wait_for("seq", 21, timeout=15)
        assert await a.factory.cluster.listener.wait_for(await _head(conn, schema), 10)
        # the client drops now, before any newer packet, and recovers on B
        await drop(ca, pg_dsn, schema, 0)
        client_proxy.target = b.port
        state = await ca.reconnect()
        assert state["recovered"] is True
        b.io.emit("seq", "B", "end")  # after whatever the recovery replayed
        await eventually(lambda: payloads(ca, "B") == ["end"], timeout=10)
        assert payloads(ca, "A") == list(range(21)), "each event once"
        offsets = [int(args[-1]) for args in ca.received("seq")]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets) == 22
        a.errors.clear()  # the outage was reported: expected
    finally:
        await a.stop()
        await b.stop()
        await pg_proxy.close()
        await client_proxy.close()
    assert not b.errors


async def test_byte_bound_of_the_publish_buffer_is_loud(pg_dsn: str, schema: str, js: Any) -> None:  # noqa: F811
    pg_port = _upstream(pg_dsn)
    pg_proxy = await SwitchProxy(pg_port).start()
    a = await Node(_via(pg_dsn, pg_proxy.port), schema, "A", max_buffer_bytes=64 * 1024).start()
    b = await Node(pg_dsn, schema, "B").start()
    try:
        ca, cb = await connect(js, a, "ca"), await connect(js, b, "cb")
        pg_proxy.target = 1
        pg_proxy.cut_all()
        blob = "x" * 10_000
        for i in range(20):
            a.io.emit("seq", "A", i, blob)
        publisher = a.factory.cluster.publisher
        assert publisher.pending == 6 and publisher.pending_bytes <= 64 * 1024
        assert publisher.refused == 14
        full = [e for e in a.errors if isinstance(e, PublishBufferFull)]
        assert full and "refused" in str(full[0]), "the first refusal is reported at once"
        text = render(a.io.metrics_registry)[0].decode()
        assert "siopg_publish_buffer_messages 6.0" in text
        assert f"siopg_publish_buffer_bytes {float(publisher.pending_bytes)}" in text
        assert "siopg_publish_refused_total 14.0" in text
        pg_proxy.target = pg_port
        assert await publisher.flush(15)
        a.io.emit("seq", "A", "end")
        for c in (ca, cb):  # the accepted ones, in order; the refused ones reached nobody
            await eventually(lambda c=c: payloads(c, "A")[-1:] == ["end"], timeout=15)
            assert payloads(c, "A") == [*range(6), "end"], c.name
        a.errors.clear()
    finally:
        await a.stop()
        await b.stop()
        await pg_proxy.close()
    assert not b.errors
