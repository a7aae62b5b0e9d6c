"""Red-team cluster member: `siopg serve tests/hostile/apps/redteam_app.py:io`.

Environment: SIOPG_TEST_DATABASE_URL, SIOPG_TEST_SCHEMA, SIOPG_NODE_NAME. Like an ordinary
app, it stores what clients send (auth, "setdata") and answers cluster-wide queries
("fetch": fetch_sockets(), "count": server_count()), so tests can check that one client's
values never break those queries for the others.
"""

from __future__ import annotations

import os
from typing import Any

import siopg

NAME = os.environ.get("SIOPG_NODE_NAME", "node")

io = siopg.Server(
    parser=os.environ.get("SIOPG_TEST_PARSER", "default"),
    ping_interval=1.0,
    ping_timeout=2.0,
    connection_state_recovery=siopg.Recovery(max_disconnection_duration=float(os.environ.get("SIOPG_TEST_WINDOW", "60"))),
    adapter=siopg.PostgresAdapter(
        os.environ["SIOPG_TEST_DATABASE_URL"],
        schema=os.environ["SIOPG_TEST_SCHEMA"],
        heartbeat_interval=0.5,
        heartbeat_timeout=2.0,
        snapshot_interval=0.1,
        request_timeout=2.0,
        cleanup_interval=float(os.environ.get("SIOPG_TEST_CLEANUP", "30")),
    ),
)


@io.on("connection")
async def on_connection(socket: Any) -> None:
    @socket.on("setdata")
    def setdata(value: Any, ack: Any = None) -> None:
        socket.data = {"v": value}
        if ack:
            ack(True)

    @socket.on("fetch")
    async def fetch(ack: Any = None) -> None:
        try:
            found = await io.fetch_sockets()
        except Exception as exc:  # noqa: BLE001 - the test reads the error
            if ack:
                ack({"error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        if ack:
            ack({"ids": sorted(s.id for s in found)})

    @socket.on("emit")
    def emit(room: Any, event: str, *args: Any) -> None:
        (io.to(room) if room else io).emit(event, *args)

    @socket.on("join")
    def join(room: Any, ack: Any = None) -> None:
        try:
            socket.join(room)
        except ValueError:
            if ack:
                ack({"error": "invalid room name"})
            return
        if ack:
            ack(True)

    @socket.on("whereami")
    def whereami(ack: Any = None) -> None:
        if ack:
            ack(NAME)
