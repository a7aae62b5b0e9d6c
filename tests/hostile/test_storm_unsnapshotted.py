"""Reconnect storm finding (helper STORM): a client that connected to A and drops before A's
session writer has written anything for it (A's writer is slow: a storm, CPU load) reconnects
to B. The session exists (its live socket, then its persist, are queued on A), so B must not
hand out a fresh session for it.

The fix (helper NOSNAP): a restore that finds no row asks every other server (SESSION_LOOKUP)
to write what it holds of that pid, then reads again; the same on its own server."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from pg.harness import Node, SwitchProxy, eventually

from siopg.adapter.postgres.migrations import quote_ident

from .pgsession_support import conn, js, node_driver, schema  # noqa: F401


async def test_reconnect_elsewhere_before_the_first_snapshot_recovers(pg_dsn: str, schema: str,  # noqa: F811
                                                                      js: Any) -> None:  # noqa: F811
    a = await Node(pg_dsn, schema, "A").start()
    b = await Node(pg_dsn, schema, "B").start()
    front = await SwitchProxy(a.port).start()
    writer = a.adapter().cluster.sessions
    slow = asyncio.Event()
    real_apply = writer._apply

    async def slow_apply(ops: Any) -> None:  # A's writer lags (a storm under load)
        await slow.wait()
        await real_apply(ops)

    writer._apply = slow_apply  # type: ignore[method-assign]
    try:
        c = js.client("c")
        state = await c.connect(front.url, transports=["websocket"], auth={"rooms": ["r"]}, listen=["ev"],
                                reconnection=True, reconnectionDelay=200, reconnectionDelayMax=400)
        sid = state["id"]
        front.target = b.port
        await c.close_engine()  # the client reconnects by itself (to B)
        loop = asyncio.get_running_loop()
        loop.call_later(2.0, slow.set)  # A's writer catches up later
        await eventually(lambda: len(c.received("connect", via="life")) == 2, timeout=15)
        state = c.received("connect", via="life")[-1][0]
        assert state["recovered"] is True and state["id"] == sid, state
    finally:
        slow.set()
        await front.close()
        await b.stop()
        await a.stop()


def _stall_writer(node: Node) -> asyncio.Event:
    """Hold `node`'s session writer until the returned event is set (a storm under load)."""
    writer = node.adapter().cluster.sessions
    go = asyncio.Event()
    real_apply = writer._apply

    async def slow_apply(ops: Any) -> None:
        await go.wait()
        await real_apply(ops)

    writer._apply = slow_apply  # type: ignore[method-assign]
    return go


async def test_reconnect_to_the_same_server_before_the_first_snapshot_recovers(pg_dsn: str,
                                                                               schema: str,  # noqa: F811
                                                                               js: Any) -> None:  # noqa: F811
    """The client comes back to the SAME server before its writer wrote anything: the old
    socket is gone there (so no in-process takeover) and its persist is still queued."""
    a = await Node(pg_dsn, schema, "A").start()
    b = await Node(pg_dsn, schema, "B").start()  # a cluster, as in production
    go = _stall_writer(a)
    try:
        c = js.client("c")
        state = await c.connect(a.url, transports=["websocket"], auth={"rooms": ["r"]}, listen=["ev"],
                                reconnection=True, reconnectionDelay=200, reconnectionDelayMax=400)
        sid = state["id"]
        await c.close_engine()  # the client reconnects by itself (to A again)
        asyncio.get_running_loop().call_later(2.0, go.set)
        await eventually(lambda: len(c.received("connect", via="life")) == 2, timeout=15)
        state = c.received("connect", via="life")[-1][0]
        assert state["recovered"] is True and state["id"] == sid, state
    finally:
        go.set()
        await b.stop()
        await a.stop()


async def test_unknown_pid_gets_a_fresh_session_promptly(pg_dsn: str, schema: str, js: Any) -> None:  # noqa: F811
    """A genuinely unknown pid costs one lookup round: servers holding nothing answer at once,
    a silent one (listed alive, never answers) is given up after `takeover_timeout`."""
    a = await Node(pg_dsn, schema, "A").start()
    b = await Node(pg_dsn, schema, "B").start()
    db = await asyncpg.connect(pg_dsn)
    try:
        # a server that heartbeats but never answers (hung, or its log reader is stuck)
        await db.execute(f"INSERT INTO {quote_ident(schema)}.nodes (uid, nsp, last_seen)"
                         " VALUES ('ghost', '/', now() + interval '1 hour')")
        timeout = b.adapter().cluster.options.takeover_timeout
        loop = asyncio.get_running_loop()
        for server, label in ((a, "a"), (b, "b")):
            c = js.client(label)
            started = loop.time()
            state = await c.connect(server.url, transports=["websocket"], auth={"pid": f"no-such-pid-{label}"})
            took = loop.time() - started
            assert state["connected"] is True and state["recovered"] is False, state
            assert took < timeout + 1.0, took
            assert took >= timeout * 0.9, took  # the silent server was asked (and waited for)
        assert not a.errors and not b.errors, (a.errors, b.errors)
    finally:
        await db.close()
        await b.stop()
        await a.stop()
