"""A restore that cannot complete in time must not hand out a fresh session (issue 7, fault 1
and the reconnect-storm flake): when the restoring server's log reader is behind the client's
offset (CPU load, a slow LISTEN connection), the server waits up to `restore_timeout`, then
closes the client's Engine.IO connection so it comes back later, and recovers it once the
reader caught up. Before the fix it waited 2 s and then started a fresh session (new id, no
rooms, the missed packets gone).

Two in-process nodes on the test Postgres, the official JS client behind a switching proxy;
node B's log reader is paused in-process (its catch-up waits on a gate the test holds).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pg.harness import Node, SwitchProxy, eventually

from .pgsession_support import conn, js, node_driver, schema  # noqa: F401


async def test_lagging_reader_turns_the_client_away_then_recovers_it(pg_dsn: str, schema: str,  # noqa: F811
                                                                    js: Any) -> None:  # noqa: F811
    a = await Node(pg_dsn, schema, "A").start()
    b = await Node(pg_dsn, schema, "B", restore_timeout=3.0).start()
    front = await SwitchProxy(a.port).start()
    gate = asyncio.Event()
    try:
        listener = await eventually(lambda: b.adapter("/").cluster.listener, timeout=10)
        catch_up = listener._catch_up

        async def gated() -> None:  # B's reader lags until the test opens the gate
            await gate.wait()
            await catch_up()

        listener._catch_up = gated
        c = js.client("c")
        state = await c.connect(front.url, transports=["websocket"], auth={"rooms": ["r"]}, listen=["ev"],
                                reconnection=True, reconnectionDelay=200, reconnectionDelayMax=400)
        sid = state["id"]
        a.io.to("r").emit("ev", 1)
        await c.wait_for("ev")  # the client's offset is now past B's reader
        front.target = b.port
        await c.close_engine()  # the client reconnects by itself (to B)
        a.io.to("r").emit("ev", 2)
        # turned away (after restore_timeout) and back again, never given a fresh session
        await eventually(lambda: len(c.received("open", via="life")) >= 3, timeout=20)
        assert len(c.received("connect", via="life")) == 1, c.received("connect", via="life")
        gate.set()
        await eventually(lambda: len(c.received("connect", via="life")) == 2, timeout=15)
        state = c.received("connect", via="life")[-1][0]
        assert state["recovered"] is True and state["id"] == sid, state
        got = await c.wait_for("ev", 2)
        assert [x[:-1] for x in got] == [[1], [2]]
        assert b.io.of("/").sockets[sid].rooms == {sid, "r"}
    finally:
        gate.set()
        await front.close()
        await b.stop()
        await a.stop()
    assert not a.errors, a.errors
    assert not b.errors, b.errors
