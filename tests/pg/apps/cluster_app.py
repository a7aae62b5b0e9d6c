"""A cluster member for multi-process tests: `python -m siopg serve tests/pg/apps/cluster_app.py:io`.

Configured by environment: SIOPG_TEST_DATABASE_URL, SIOPG_TEST_SCHEMA, SIOPG_NODE_NAME.
Clients drive it: "emit"(room|None, event, *args) broadcasts from this server, "count" answers
server_count(), "join" joins a room, "whereami" answers the node name.
"""

from __future__ import annotations

import os
from typing import Any

import siopg

NAME = os.environ.get("SIOPG_NODE_NAME", "node")

io = siopg.Server(
    ping_interval=1.0,
    ping_timeout=2.0,
    connection_state_recovery=siopg.Recovery(max_disconnection_duration=60.0),
    adapter=siopg.PostgresAdapter(
        os.environ["SIOPG_TEST_DATABASE_URL"],
        schema=os.environ["SIOPG_TEST_SCHEMA"],
        heartbeat_interval=0.5,
        heartbeat_timeout=2.0,
        snapshot_interval=0.1,
    ),
)


@io.on("connection")
async def on_connection(socket: Any) -> None:
    if not socket.recovered:
        rooms = (socket.handshake.auth or {}).get("rooms")
        if isinstance(rooms, list):
            socket.join([str(r) for r in rooms])
        socket.data = {"node": NAME}

    @socket.on("emit")
    def emit(room: Any, event: str, *args: Any) -> None:
        (io.to(room) if room else io).emit(event, *args)

    @socket.on("count")
    async def count(ack: Any = None) -> None:
        if ack:
            ack(await io.server_count())

    @socket.on("join")
    def join(room: str, ack: Any = None) -> None:
        socket.join(room)
        if ack:
            ack(True)

    @socket.on("whereami")
    def whereami(ack: Any = None) -> None:
        if ack:
            ack(NAME)
