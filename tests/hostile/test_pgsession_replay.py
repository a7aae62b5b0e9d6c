"""Finding 5 of issue 7 and decision 2: recovery replays only what the client could have been
sent: nothing older than the session itself, nothing to a room from before it joined it.

A presenter of the session's pid offers an offset older than the session (any offset of the
namespace used to be accepted as the replay base): the replay must start at the session start
and skip the packet sent to a room before the socket joined it.
"""

from __future__ import annotations

from typing import Any

import siopg
from pg.harness import SwitchProxy, eventually

from .pgsession_support import conn, js, node_driver, nodes, schema, session_row  # noqa: F401


async def test_replay_starts_at_the_session_and_at_each_room_join(nodes: Any, js: Any, pg_dsn: str,  # noqa: F811
                                                                  schema: str) -> None:  # noqa: F811
    a, b = await nodes("A"), await nodes("B")
    emitter = siopg.Emitter(pg_dsn, schema=schema)
    await emitter.connect()
    proxy = await SwitchProxy(a.port).start()
    try:
        old = await emitter.emit("ev", "before the session (1)")
        e0 = await emitter.emit("ev", "before the session (2)")
        assert await a.factory.cluster.listener.wait_for(e0, 5)
        c = js.client("c")
        sid = (await c.connect(proxy.url, transports=["websocket"], listen=["ev"]))["id"]
        await emitter.emit("ev", "e1")
        await c.wait_for("ev")
        l1 = await emitter.to("late").emit("ev", "to late, before joining it")
        assert await a.factory.cluster.listener.wait_for(l1, 5)
        assert "late" in await c.call("join", "late")
        await emitter.to("late").emit("ev", "l2")
        e2 = await emitter.emit("ev", "e2")
        await c.wait_for("ev", 3)
        assert [x[:-1] for x in c.received("ev")] == [["e1"], ["l2"], ["e2"]]
        await c.close_engine()

        async def persisted() -> Any:
            row = await session_row(pg_dsn, schema, sid)
            return row if row is not None and row["expires_at"] is not None else None

        row = await eventually(persisted)
        assert await b.factory.cluster.listener.wait_for(e2, 5)
        newcomer = js.client("newcomer")
        state = await newcomer.connect(b.url, transports=["websocket"], auth={"pid": row["pid"], "offset": str(old)},
                                       listen=["ev"])
        assert state["connected"] and state["id"] == sid, state
        await newcomer.wait_for("ev", 3)
        await emitter.emit("ev", "live")
        got = await newcomer.wait_for("ev", 4)
        assert [x[:-1] for x in got] == [["e1"], ["l2"], ["e2"], ["live"]]
    finally:
        await emitter.close()
        await proxy.close()
