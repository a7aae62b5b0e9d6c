"""siopg side of bench/chat.py (twin: bench/apps/node_chat.mjs): a chat room server.

Every client names its room in the handshake auth ({"room": "r17"}) and is put in it; a "say"
event is relayed to the rest of the room (socket.to(room).emit, the usual chat pattern), so
with a PostgresAdapter every message crosses the cluster: client -> this worker -> Postgres
log -> every worker -> the room's clients on it. The payload is relayed untouched: it carries
the sender's CLOCK_MONOTONIC send time, so receivers measure the whole trip.
Env: SIOPG_BENCH_DSN, SIOPG_BENCH_SCHEMA (without a DSN: one process, in-memory adapter),
SIOPG_BENCH_STATS (see _instruments.py).
Run: python -m siopg serve bench/apps/siopg_chat.py:io --port PORT
"""

from __future__ import annotations

import os
from typing import Any

import _instruments

import siopg

_dsn = os.environ.get("SIOPG_BENCH_DSN")
io = siopg.Server(
    write_coalesce_ms=float(os.environ.get("SIOPG_BENCH_WRITE_COALESCE_MS") or 0),
    adapter=siopg.PostgresAdapter(_dsn, schema=os.environ.get("SIOPG_BENCH_SCHEMA") or "siopg") if _dsn else None,
)
_instruments.install(io)


@io.on("connection")
def _on_connection(socket: siopg.Socket) -> None:
    room = str((socket.handshake.auth or {}).get("room", "lobby"))
    socket.join(room)

    @socket.on("say")
    def _say(msg: Any, ack: Any = None) -> None:
        socket.to(room).emit("msg", msg)
