"""Reconnect storm finding (helper STORM): a client that connected to A and drops before A's
session writer has written anything for it (A's writer is slow: a storm, CPU load) reconnects
to B. The session exists (its live socket, then its persist, are queued on A), so B must not
hand out a fresh session for it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pg.harness import Node, SwitchProxy, eventually

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
