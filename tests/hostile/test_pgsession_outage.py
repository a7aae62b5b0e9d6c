"""Fault 1 of issue 7 and decision 5: a client reconnecting while Postgres is unreachable must
not get a fresh session for a session that exists.

Worker B reaches Postgres through a TCP proxy the test cuts (the shared server is never
stopped). The client drops from A and reconnects to B while B's database is away: B waits up
to `restore_timeout`, then closes the client's Engine.IO connection; the official client
comes back on its own, and once the database is back it recovers its id, rooms and the packet
it missed.
"""

from __future__ import annotations

from typing import Any

from pg.harness import Node, SwitchProxy, eventually
from pg.test_blips import _upstream, _via

from .pgsession_support import conn, js, node_driver, schema  # noqa: F401


async def test_restore_waits_for_postgres_and_never_hands_out_a_fresh_session(pg_dsn: str, schema: str,  # noqa: F811
                                                                               js: Any) -> None:  # noqa: F811
    upstream = _upstream(pg_dsn)
    db = await SwitchProxy(upstream).start()
    a = await Node(pg_dsn, schema, "A").start()
    b = await Node(_via(pg_dsn, db.port), schema, "B", restore_timeout=1.0).start()
    front = await SwitchProxy(a.port).start()
    try:
        c = js.client("c")
        state = await c.connect(front.url, transports=["websocket"], auth={"rooms": ["r"]}, listen=["ev"],
                                reconnection=True, reconnectionDelay=200, reconnectionDelayMax=400)
        sid = state["id"]
        a.io.to("r").emit("ev", 1)
        await c.wait_for("ev")
        db.target = 1  # B's Postgres is unreachable: every connection cut, none possible
        db.cut_all()
        front.target = b.port
        await c.close_engine()  # the client reconnects by itself (to B)
        a.io.to("r").emit("ev", 2)
        # turned away at least twice (each time after waiting restore_timeout), never connected
        await eventually(lambda: len(c.received("open", via="life")) >= 3, timeout=15)
        assert len(c.received("connect", via="life")) == 1, c.received("connect", via="life")
        db.target = upstream
        await eventually(lambda: len(c.received("connect", via="life")) == 2, timeout=15)
        state = c.received("connect", via="life")[-1][0]
        assert state["recovered"] is True and state["id"] == sid, state
        got = await c.wait_for("ev", 2)
        assert [x[:-1] for x in got] == [[1], [2]]
        assert b.io.of("/").sockets[sid].rooms == {sid, "r"}
    finally:
        await front.close()
        await b.stop()
        await a.stop()
        await db.close()
    b.errors.clear()  # the outage was reported: expected
    assert not a.errors, a.errors
