"""Fault 6 of issue 7 and decision 6: after a crash, the recovery window is measured from when
the client lost its connection (at or after the crashed server's last heartbeat), so a live
session of a dead server stays recoverable until last_seen + heartbeat_timeout + window, and
the packets it missed are retained that long too.

Worker A (window 60 s, heartbeat_timeout 2 s) is SIGKILLed; the clock is then moved on by
ageing A's last heartbeat and the log by 61 s (past the window, inside window + timeout).
A prune with the adapter's own retention runs; the client still recovers on B with the
packet it missed.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from pg.harness import SwitchProxy, eventually
from siopg.adapter.postgres.migrations import quote_ident

from .pgsession_support import client, conn, js, node_driver, nodes, procs, schema, wait_rooms  # noqa: F401


async def test_window_counts_from_the_last_heartbeat_plus_its_timeout(procs: Any, nodes: Any, js: Any,  # noqa: F811
                                                                       pg_dsn: str, schema: str) -> None:  # noqa: F811
    a, b = await procs("A"), await procs("B")
    proxy = await SwitchProxy(a.port).start()
    db = await asyncpg.connect(pg_dsn)
    q = quote_ident(schema)
    try:
        c = await client(js, proxy.url, "c", auth={"rooms": ["r"]})
        await c.on("ev")
        row = await wait_rooms(pg_dsn, schema, c.sid, "r")
        a.kill()
        ctl = await client(js, b.url, "ctl")
        await ctl.emit("emit", "r", "ev", "while away")
        await eventually(lambda: _packets(db, q), timeout=5)
        # 61 s later: A's last heartbeat and every packet are that old
        await db.execute(f"UPDATE {q}.nodes SET last_seen = now() - interval '61 seconds' WHERE uid = $1",
                         row["owner"])
        await db.execute(f"UPDATE {q}.packets SET created_at = now() - interval '61 seconds'")
        # a prune with the retention an adapter of this cluster computes (window 60 + timeout
        # + how long a dead connection goes unnoticed)
        pruner = await nodes("P", heartbeat_timeout=2.0)
        cluster = pruner.factory.cluster
        assert cluster.retention() == 60.0 + 2.0 + cluster.dead_transport_bound()
        await cluster.store.prune(cluster.retention(), 3600)
        proxy.target = b.port
        await eventually(lambda: _disconnected(c), timeout=5)
        state = await c.reconnect()
        assert state["recovered"] is True and state["id"] == c.sid, state
        got = await c.wait_for("ev")
        assert [x[:-1] for x in got] == [["while away"]]
    finally:
        await db.close()
        await proxy.close()


async def _packets(db: asyncpg.Connection, q: str) -> bool:
    return bool(await db.fetchval(f"SELECT count(*) FROM {q}.packets WHERE recoverable"))


async def _disconnected(c: Any) -> bool:
    return not (await c.state())["connected"]
