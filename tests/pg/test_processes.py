"""Several siopg server processes sharing Postgres (`python -m siopg serve ...`), the JS client on each."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
import pytest

from siopg.adapter.postgres.migrations import quote_ident

from .harness import ServerProcess, SwitchProxy, eventually


@pytest.fixture
async def procs(pg_dsn: str, schema: str):  # type: ignore[no-untyped-def]
    started: list[ServerProcess] = []

    async def start(name: str) -> ServerProcess:
        p = ServerProcess(pg_dsn, schema, name)
        started.append(p)
        return await p.ready()

    yield start
    for p in started:
        await p.stop()
        os.unlink(p.log.name)


async def client(js: Any, url: str, label: str, **auth: Any) -> Any:
    c = js.client(label)
    state = await c.connect(url, transports=["websocket"], auth=auth)
    assert state["connected"], state
    c.sid = state["id"]
    return c


async def count(c: Any) -> int:
    return await c.call("count")


async def test_processes_broadcast_and_server_count(procs: Any, js: Any) -> None:
    a = await procs("A")
    ca = await client(js, a.url, "ca", rooms=["r"])
    assert await count(ca) == 1
    b = await procs("B")
    assert await count(ca) == 2  # a starting process counts at once
    cb = await client(js, b.url, "cb", rooms=["r"])
    for c in (ca, cb):
        await c.on("hello")
    await ca.emit("emit", "r", "hello", "from A", b"\x01\x02")
    await cb.emit("emit", None, "hello", "from B")
    for c in (ca, cb):
        got = await c.wait_for("hello", 2)
        assert sorted(tuple(x[:-1]) for x in got) == [("from A", b"\x01\x02"), ("from B",)]
    assert await b.stop() == 0
    assert await count(ca) == 1  # a clean stop leaves at once
    c_proc = await procs("C")
    assert await count(ca) == 2
    c_proc.kill()  # a dead one leaves after the heartbeat timeout (2 s here)
    started = asyncio.get_running_loop().time()
    await eventually(lambda: _count_is(ca, 1), timeout=8, interval=0.2)
    assert asyncio.get_running_loop().time() - started >= 1.0, "not before its heartbeats are overdue"


async def _count_is(c: Any, n: int) -> bool:
    return await count(c) == n


async def test_recovery_after_sigkill(procs: Any, js: Any, pg_dsn: str, schema: str) -> None:
    a, b = await procs("A"), await procs("B")
    proxy = await SwitchProxy(a.port).start()
    try:
        c = await client(js, proxy.url, "c", rooms=["r"])
        await c.on("ev")
        await c.call("join", "later")  # a room joined after connecting is in the snapshot too
        ctl = await client(js, b.url, "ctl")
        await ctl.emit("emit", "r", "ev", 1)
        await c.wait_for("ev")
        conn = await asyncpg.connect(pg_dsn)
        q = quote_ident(schema)

        async def snapshot_has_rooms() -> bool:
            rooms = await conn.fetchval(f"SELECT rooms FROM {q}.sessions WHERE sid = $1", c.sid)
            return rooms is not None and "later" in rooms

        await eventually(snapshot_has_rooms)
        a.kill()
        await ctl.emit("emit", "r", "ev", 2)
        await ctl.emit("emit", "later", "ev", 3)
        await ctl.emit("emit", "nobody", "ev", 4)
        proxy.target = b.port
        await eventually(lambda: c.received("disconnect", via="life") or _disconnected(c), timeout=5)
        state = await c.reconnect()
        assert state["recovered"] is True and state["id"] == c.sid
        got = await c.wait_for("ev", 3)
        assert [x[:-1] for x in got] == [[1], [2], [3]]
        assert await c.call("whereami") == "B"
        await conn.close()
    finally:
        await proxy.close()


async def _disconnected(c: Any) -> bool:
    return not (await c.state())["connected"]
