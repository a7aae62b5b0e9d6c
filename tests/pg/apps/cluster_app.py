"""A cluster member for multi-process tests: `python -m siopg serve tests/pg/apps/cluster_app.py:io`.

Configured by environment: SIOPG_TEST_DATABASE_URL, SIOPG_TEST_SCHEMA, SIOPG_NODE_NAME,
optionally SIOPG_TEST_SNAPSHOT_INTERVAL (seconds, default 0.1).
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
        snapshot_interval=float(os.environ.get("SIOPG_TEST_SNAPSHOT_INTERVAL", "0.1")),
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

    @socket.on("rawjoin")
    def rawjoin(bad_room: str, everyone_room: str, ack: Any = None) -> None:
        """Hostile-test hook: put a room name the name checks would refuse straight into the
        adapter (defence in depth below them), and move every local socket into
        `everyone_room` in the same loop step, so all their session writes share one batch."""
        socket.adapter.add_all(socket.id, [bad_room])
        for other in list(io.of("/").sockets.values()):
            other.join(everyone_room)
        if ack:
            ack(True)

    @socket.on("whereami")
    def whereami(ack: Any = None) -> None:
        if ack:
            ack(NAME)
