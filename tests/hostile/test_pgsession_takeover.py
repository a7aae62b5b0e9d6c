"""Finding 4 of issue 7 (across processes) and decision 3: a pid presented while its session is
live on another worker is a takeover, never a clone.

The victim is connected to worker A; another client presents the victim's pid (and offset) to
worker B. B asks A to hand the session over: A writes its final state and closes the
victim's connection (the victim's client sees the disconnect); the newcomer gets the id,
rooms and data, and from then on the victim's private emits reach only the newcomer.
"""

from __future__ import annotations

from typing import Any

from pg.harness import eventually

from .pgsession_support import client, conn, js, node_driver, procs, schema, session_row, wait_rooms  # noqa: F401


async def test_pid_of_a_live_session_on_another_worker_is_a_takeover(procs: Any, js: Any, pg_dsn: str,  # noqa: F811
                                                                     schema: str) -> None:  # noqa: F811
    a, b = await procs("A"), await procs("B")
    victim = await client(js, a.url, "victim", auth={"rooms": ["r"]})
    await victim.on("private")
    await victim.call("join", "later")  # state changed after connecting: handed over too
    row = await wait_rooms(pg_dsn, schema, victim.sid, "later")
    ctl = await client(js, b.url, "ctl")
    await ctl.emit("emit", victim.sid, "private", "before")
    got = await victim.wait_for("private")
    newcomer = js.client("newcomer")
    state = await newcomer.connect(b.url, transports=["websocket"], auth={"pid": row["pid"], "offset": got[0][-1]},
                                   listen=["private"])
    # (the JS client reports `recovered` only for a pid it got itself: compare the id)
    assert state["connected"] and state["id"] == victim.sid, state
    # the old connection was closed so its client notices
    await eventually(lambda: victim.received("disconnect", via="life"), timeout=5)
    assert await newcomer.call("whereami") == "B"
    await ctl.emit("emit", victim.sid, "private", "after")
    await ctl.emit("emit", "later", "private", "to later")
    await newcomer.wait_for("private", 2)
    assert [x[:-1] for x in newcomer.received("private")] == [["after"], ["to later"]]
    assert [x[:-1] for x in victim.received("private")] == [["before"]], "never a clone"
    row = await session_row(pg_dsn, schema, victim.sid)
    assert row["expires_at"] is None and "later" in row["rooms"], "live on B with the handed-over rooms"
