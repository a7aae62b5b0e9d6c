"""Connection state recovery across the cluster: a client drops on one server, recovers on another.

The JS client connects through `SwitchProxy` (a TCP balancer); after a drop the proxy points at
the other server, so the client's ordinary reconnection (with its pid and offset) lands there.
Each event carries its offset as a trailing string argument.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
import pytest

import siopg
from siopg.adapter.errors import RecoveryRefused
from siopg.adapter.postgres.migrations import quote_ident

from .harness import SwitchProxy, eventually


@pytest.fixture
async def proxy():  # type: ignore[no-untyped-def]
    p = SwitchProxy(0)
    await p.start()
    yield p
    await p.close()


async def sessions(pg_dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.sessions")
    finally:
        await conn.close()


async def drop(client: Any, pg_dsn: str, schema: str, before: int) -> None:
    """Cut the client's connection and wait until its session is persisted."""
    await client.close_engine()
    await eventually(lambda: _more_sessions(pg_dsn, schema, before))


async def _more_sessions(pg_dsn: str, schema: str, before: int) -> bool:
    return await sessions(pg_dsn, schema) > before


async def _packets(conn: asyncpg.Connection, q: str, count: int) -> bool:
    return await conn.fetchval(f"SELECT count(*) FROM {q}.packets") >= count


async def _has_session(pg_dsn: str, schema: str, sid: str) -> bool:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.sessions WHERE sid = $1", sid) > 0
    finally:
        await conn.close()


async def test_recover_on_the_other_server(nodes: Any, js: Any, proxy: SwitchProxy, pg_dsn: str, schema: str) -> None:
    a, b = await nodes("A"), await nodes("B")
    proxy.target = a.port
    c = js.client("c")
    state = await c.connect(proxy.url, transports=["websocket"], auth={"rooms": ["news"], "tag": "t1"})
    sid = state["id"]
    await c.on("news", "other")
    await a.io.to("news").emit("news", "before")
    first = (await c.wait_for("news"))[0]
    await drop(c, pg_dsn, schema, 0)
    # while it is away: A, B, an Emitter and SQL all emit; some packets are not for it
    await a.io.to("news").emit("news", "a1")
    await a.factory.cluster.publisher.flush()  # two servers' emits have no order between them
    await b.io.emit("news", "b1", b"\x00\xff")
    await b.factory.cluster.publisher.flush()
    await siopg.Emitter(pg_dsn, schema=schema).to("news").emit("news", "e1", {"k": [1]})
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(f"SELECT {quote_ident(schema)}.emit('/', 'news', 'news', '\"sql1\"'::jsonb)")
    await conn.close()
    await b.io.to("elsewhere").emit("news", "not for it")
    await a.io.to("news").except_("news").emit("news", "excluded")
    await a.io.to("news").emit("other", "a2")
    await a.io.volatile.to("news").emit("news", "volatile: not replayed")
    await a.factory.cluster.publisher.flush()
    await b.factory.cluster.listener.wait_for(await _head(pg_dsn, schema), 5)
    proxy.target = b.port
    state = await c.reconnect()
    assert state["recovered"] is True and state["id"] == sid
    await c.wait_for("news", 5)
    await c.wait_for("other", 1)
    news = c.received("news")
    assert [args[:-1] for args in news] == [
        ["before"], ["a1"], ["b1", b"\x00\xff"], ["e1", {"k": [1]}], ["sql1"],
    ]
    offsets = [int(args[-1]) for args in news] + [int(c.received("other")[0][-1])]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert int(first[-1]) == offsets[0]
    # it lives on B now, with its rooms and data
    socket = b.io.of("/").sockets[sid]
    assert socket.recovered and socket.rooms == {sid, "news"} and socket.data == {"node": "A", "tag": "t1"}
    await b.io.to("news").emit("news", "live")
    assert (await c.wait_for("news", 6))[-1][:-1] == ["live"]
    await asyncio.sleep(0.2)
    assert len(c.received("news")) == 6, "nothing replayed twice"


async def _head(pg_dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await conn.fetchval(f"SELECT max(id) FROM {quote_ident(schema)}.packets")
    finally:
        await conn.close()


async def test_recover_before_any_event(nodes: Any, js: Any, proxy: SwitchProxy, pg_dsn: str, schema: str) -> None:
    """socket.io#4888: a client that never got an offset still recovers."""
    a, b = await nodes("A"), await nodes("B")
    proxy.target = a.port
    c = js.client("c")
    sid = (await c.connect(proxy.url, transports=["websocket"], auth={"rooms": ["r"]}))["id"]
    await c.on("ev")
    await drop(c, pg_dsn, schema, 0)
    await a.io.to("r").emit("ev", 1)
    await a.factory.cluster.publisher.flush()  # two servers' emits have no order between them
    await b.io.to("r").emit("ev", 2)
    proxy.target = b.port
    state = await c.reconnect()
    assert state["recovered"] is True and state["id"] == sid
    assert [x[:-1] for x in await c.wait_for("ev", 2)] == [[1], [2]]


async def _fresh_connect(js: Any, url: str, auth: dict[str, Any]) -> dict[str, Any]:
    c = js.client("f")
    state = await c.connect(url, transports=["websocket"], auth=auth)
    assert state["connected"]
    return state


async def test_bad_recovery_input_gives_a_fresh_session(nodes: Any, js: Any, proxy: SwitchProxy, pg_dsn: str,
                                                        schema: str) -> None:
    a, b = await nodes("A"), await nodes("B")
    for node in (a, b):
        node.io.of("/other").on("connection", lambda s: None)
    await a.io.of("/other")._start_init()
    await b.io.of("/other")._start_init()
    adapter = b.adapter()
    # forged pid / offsets of every kind: no session, no crash
    for pid, offset, cause in (
        ("nope", None, "unknown_session"), ("nope", "1", "unknown_session"), ("x" * 5000, "1", "unknown_session"),
        ("p", "-1", "offset_invalid"), ("p", "abc", "offset_invalid"), ("p", "1e5", "offset_invalid"),
        ("p", "9" * 30, "offset_invalid"), ("'; DROP TABLE x; --", "0", "unknown_session"),
    ):
        with pytest.raises(RecoveryRefused) as refused:
            await adapter.restore_session(pid, offset)
        assert refused.value.cause == cause, (pid[:10], offset)
    # a real session, offsets that are not its namespace's, too new, or forged
    proxy.target = a.port
    c = js.client("c")
    sid = (await c.connect(proxy.url, transports=["websocket"]))["id"]
    await c.on("ev")
    await a.io.emit("ev", 1)
    await c.wait_for("ev")
    await drop(c, pg_dsn, schema, 0)
    other_offset = await siopg.Emitter(pg_dsn, schema=schema).of("/other").emit("x")
    conn = await asyncpg.connect(pg_dsn)
    q = quote_ident(schema)
    pid = await conn.fetchval(f"SELECT pid FROM {q}.sessions")
    for bad in (str(other_offset), str(other_offset + 1000), "999999999"):
        # each attempt is refused before the session is used, so it stays for the real client
        with pytest.raises(RecoveryRefused) as refused:
            await adapter.restore_session(pid, bad)
        assert refused.value.cause == "offset_invalid"
    assert await conn.fetchval(f"SELECT count(*) FROM {q}.sessions") == 1
    proxy.target = b.port
    state = await c.reconnect()
    assert state["recovered"] is True and state["id"] == sid
    await conn.close()


async def test_expired_or_pruned_sessions(nodes: Any, js: Any, proxy: SwitchProxy, pg_dsn: str, schema: str) -> None:
    a, b = await nodes("A"), await nodes("B")
    q = quote_ident(schema)
    conn = await asyncpg.connect(pg_dsn)
    proxy.target = a.port
    clients = []
    for i in range(2):
        c = js.client(f"c{i}")
        await c.connect(proxy.url, transports=["websocket"])
        await c.on("ev")
        clients.append(c)
    await a.io.emit("ev", 1)
    for i, c in enumerate(clients):
        await c.wait_for("ev")
        await drop(c, pg_dsn, schema, i)
    await conn.execute(f"UPDATE {q}.sessions SET expires_at = now() - interval '1 second'"
                       f" WHERE sid = (SELECT min(sid) FROM {q}.sessions)")
    # the other one: a packet it missed (written after its connection was last known alive,
    # i.e. after its disconnect minus dead_transport_bound) was pruned away
    await a.io.emit("ev", 2)
    await eventually(lambda: _packets(conn, q, 2))
    await conn.execute(f"UPDATE {q}.packets SET created_at = now() - interval '2 seconds'")
    pruned = await a.factory.cluster.store.prune(retention=1, node_ttl=3600)
    assert pruned.packets >= 1 and pruned.sessions == 1
    assert await conn.fetchval(f"SELECT pruned_through FROM {q}.log_state") >= 1
    proxy.target = b.port
    for c in clients:
        state = await c.reconnect()
        assert state["connected"] and state["recovered"] is False
    await conn.close()


async def test_prune_cost_is_bounded(pg_dsn: str, schema: str) -> None:
    from siopg.adapter.postgres.store import Store

    q = quote_ident(schema)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                f"INSERT INTO {q}.packets (kind, uid, nsp, created_at)"
                " SELECT 3, 'u', '/', now() - interval '1 hour' FROM generate_series(1, 2500)"
            )
            await conn.execute(f"INSERT INTO {q}.packets (kind, uid, nsp) SELECT 3, 'u', '/' FROM generate_series(1, 10)")
        store = Store(pool, schema, q)
        first = await store.prune(retention=60, node_ttl=60, batch=1000, rounds=2)
        assert first.packets == 2000  # at most batch * rounds per run
        second = await store.prune(retention=60, node_ttl=60, batch=1000, rounds=2)
        assert second.packets == 500
        assert (await store.prune(retention=60, node_ttl=60)).packets == 0
        async with pool.acquire() as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM {q}.packets") == 10
    finally:
        await pool.close()


async def test_ordering_under_concurrent_publishers_and_reconnects(nodes: Any, js: Any, pg_dsn: str,
                                                                   schema: str) -> None:
    """A, B and an Emitter publish concurrently; clients drop and recover in a loop, switching
    servers. Every client gets every packet of every publisher exactly once, in order."""
    a, b = await nodes("A"), await nodes("B")
    proxies = [await SwitchProxy(a.port).start() for _ in range(3)]
    clients = []
    for i, p in enumerate(proxies):
        c = js.client(f"c{i}")
        c.sid = (await c.connect(p.url, transports=["websocket"]))["id"]
        await c.on("seq")
        clients.append(c)
    n = 60
    emitter = siopg.Emitter(pg_dsn, schema=schema)
    await emitter.connect()

    async def publish(name: str, send: Any) -> None:
        for i in range(n):
            await send(i)
            if i % 7 == 0:
                await asyncio.sleep(random.random() * 0.03)

    async def churn(c: Any, p: SwitchProxy) -> None:
        for _ in range(3):
            await asyncio.sleep(0.05 + random.random() * 0.1)
            await c.close_engine()
            await eventually(lambda: _has_session(pg_dsn, schema, c.sid))
            await asyncio.sleep(random.random() * 0.05)
            p.target = b.port if p.target == a.port else a.port
            state = await c.reconnect()
            assert state["recovered"] is True, state

    await asyncio.gather(
        publish("A", lambda i: a.io.emit("seq", "A", i)),
        publish("B", lambda i: b.io.emit("seq", "B", i)),
        publish("E", lambda i: emitter.emit("seq", "E", i)),
        *(churn(c, p) for c, p in zip(clients, proxies)),
    )
    await emitter.close()
    for c in clients:
        await c.wait_for("seq", 3 * n, timeout=10)
        got = c.received("seq")
        offsets = [int(x[-1]) for x in got]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), "in log order, no duplicate"
        for name in "ABE":
            assert [x[1] for x in got if x[0] == name] == list(range(n)), f"{c.name}: publisher {name}"
    for p in proxies:
        await p.close()


async def test_recover_after_a_clean_server_stop(nodes: Any, js: Any, proxy: SwitchProxy) -> None:
    """A rolling restart: A shuts down (sessions persisted), clients recover on B."""
    a, b = await nodes("A"), await nodes("B")
    proxy.target = a.port
    c = js.client("c")
    sid = (await c.connect(proxy.url, transports=["websocket"], auth={"rooms": ["r"]}))["id"]
    await c.on("ev")
    await a.stop()
    await b.io.to("r").emit("ev", "while restarting")
    proxy.target = b.port
    await eventually(lambda: c.received("disconnect", via="life"))
    state = await c.reconnect()
    assert state["recovered"] is True and state["id"] == sid
    assert [x[:-1] for x in await c.wait_for("ev")] == [["while restarting"]]


async def test_deliberate_disconnect_leaves_no_session(nodes: Any, js: Any, pg_dsn: str, schema: str) -> None:
    a = await nodes("A")
    c = js.client("c")
    sid = (await c.connect(a.url, transports=["websocket"]))["id"]
    await eventually(lambda: _has_session(pg_dsn, schema, sid))  # the live snapshot (crash safety)
    await c.disconnect()  # the client leaves on purpose: nothing to recover
    await eventually(lambda: _no_session(pg_dsn, schema, sid))


async def _no_session(pg_dsn: str, schema: str, sid: str) -> bool:
    return not await _has_session(pg_dsn, schema, sid)
