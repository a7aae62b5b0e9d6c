"""Fault 2 of issue 7: a just-recovered session must survive its new worker dying at once.

A client on A recovers on B after A is SIGKILLed; B is SIGKILLed right after the recovery,
before its session writer's next pass (snapshot_interval is 2 s here, so "right after" is
well inside the old gap); the client must recover again, on C, with its id, rooms and every
packet, none twice. Recovery after SIGKILL goes through the takeover timeout: the dead
owner never answers.
"""

from __future__ import annotations

from typing import Any

from pg.harness import SwitchProxy, eventually

from .pgsession_support import client, conn, js, node_driver, offsets, procs, schema, wait_rooms  # noqa: F401

SLOW = {"SIOPG_TEST_SNAPSHOT_INTERVAL": "2.0"}


async def test_recovered_session_survives_its_new_worker_dying_at_once(procs: Any, js: Any, pg_dsn: str,  # noqa: F811
                                                                       schema: str) -> None:  # noqa: F811
    a, b, c_proc = await procs("A", **SLOW), await procs("B", **SLOW), await procs("C", **SLOW)
    proxy = await SwitchProxy(a.port).start()
    try:
        c = await client(js, proxy.url, "c", auth={"rooms": ["r"]})
        await c.on("ev")
        await wait_rooms(pg_dsn, schema, c.sid, "r", timeout=8)
        ctl = await client(js, c_proc.url, "ctl")
        await ctl.emit("emit", "r", "ev", 1)
        await c.wait_for("ev")
        a.kill()
        await ctl.emit("emit", "r", "ev", 2)
        proxy.target = b.port
        await eventually(lambda: _disconnected(c), timeout=5)
        state = await c.reconnect()
        assert state["recovered"] is True and state["id"] == c.sid
        b.kill()  # before B's session writer ran: the old code had deleted the row on restore
        await c.wait_for("ev", 2)
        await ctl.emit("emit", "r", "ev", 3)
        proxy.target = c_proc.port
        await eventually(lambda: _disconnected(c), timeout=5)
        state = await c.reconnect(timeout_ms=8000)
        assert state["recovered"] is True and state["id"] == c.sid, state
        got = await c.wait_for("ev", 3)
        assert [x[:-1] for x in got] == [[1], [2], [3]]
        assert offsets(got) == sorted(set(offsets(got))), "in order, none twice"
        assert await c.call("whereami") == "C"
    finally:
        await proxy.close()


async def _disconnected(c: Any) -> bool:
    return not (await c.state())["connected"]
