"""Finding 1 of issue 7: one value Postgres refuses must fail only its own socket's session
write, never the other sockets' writes batched with it.

Three victims and an attacker on worker A (a real `siopg serve` process); the attacker's room
name contains NUL and lands in the same session-writer batch as a room change of every victim.
A is then SIGKILLed: the victims recover on B with the room they were moved into.
"""

from __future__ import annotations

from typing import Any

from pg.harness import SwitchProxy, eventually

from .pgsession_support import client, conn, js, node_driver, procs, schema, session_row, wait_rooms  # noqa: F401


async def test_bad_room_value_fails_only_its_own_session_write(procs: Any, js: Any, pg_dsn: str,  # noqa: F811
                                                              schema: str) -> None:  # noqa: F811
    a, b = await procs("A"), await procs("B")
    proxy = await SwitchProxy(a.port).start()
    try:
        victims = [await client(js, proxy.url, f"v{i}", auth={"rooms": ["r"]}) for i in range(3)]
        attacker = await client(js, proxy.url, "attacker")
        for v in victims:
            await v.on("ev")
            await wait_rooms(pg_dsn, schema, v.sid, "r")
        assert await attacker.call("rawjoin", "bad\x00room", "moved") is True
        for v in victims:  # before the fix: the whole batch failed, "moved" never landed
            await wait_rooms(pg_dsn, schema, v.sid, "moved")
        row = await session_row(pg_dsn, schema, attacker.sid)
        assert row is None or "moved" not in row["rooms"], "the attacker's own write is the one refused"
        await eventually(lambda: "not saved" in a.logs(), timeout=5)  # reported, not silent
        a.kill()
        ctl = await client(js, b.url, "ctl")
        await ctl.emit("emit", "moved", "ev", "while away")
        proxy.target = b.port
        for v in victims:
            await eventually(lambda v=v: _disconnected(v), timeout=5)
            state = await v.reconnect()
            assert state["recovered"] is True and state["id"] == v.sid, state
            got = await v.wait_for("ev")
            assert [x[:-1] for x in got] == [["while away"]]
    finally:
        await proxy.close()


async def _disconnected(c: Any) -> bool:
    return not (await c.state())["connected"]


async def test_session_writes_during_an_outage_are_kept_for_later(pg_dsn: str, schema: str,  # noqa: F811
                                                                  js: Any) -> None:  # noqa: F811
    """A connection error is not a bad value: the room change made while Postgres was away is
    written once it is back (it used to be dropped, so a crash lost the room)."""
    from pg.harness import Node
    from pg.test_blips import _upstream, _via

    upstream = _upstream(pg_dsn)
    db = await SwitchProxy(upstream).start()
    a = await Node(_via(pg_dsn, db.port), schema, "A").start()
    try:
        c = await client(js, a.url, "c", auth={"rooms": ["r"]})
        await wait_rooms(pg_dsn, schema, c.sid, "r")
        store = a.factory.cluster.store
        failed: list[BaseException] = []
        snapshot = store.snapshot

        async def counting_snapshot(*args: Any) -> None:  # observe the writer's attempts
            try:
                await snapshot(*args)
            except Exception as exc:
                failed.append(exc)
                raise

        store.snapshot = counting_snapshot
        db.target = 1
        db.cut_all()
        assert "during" in await c.call("join", "during")
        await eventually(lambda: failed, timeout=5)  # the write of the room change failed
        db.target = upstream
        await wait_rooms(pg_dsn, schema, c.sid, "during", timeout=10)
    finally:
        await a.stop()
        await db.close()
    a.errors.clear()
