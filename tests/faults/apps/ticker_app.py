"""The fault suite's app: every worker broadcasts numbered "tick" events at a fixed rate.

Run as `siopg serve tests/faults/apps/ticker_app.py:io --workers 2 --database-url ...`.
Each worker process is one producer (its pid) counting 0, 1, 2...; the test switches the
stream on and off through a control file (SIOPG_FAULTS_CONTROL: "run" or anything else), so
every client is connected before the first tick. Connection state recovery is on, so a
client that drops must get back its session and every tick it missed, once, in order.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import siopg

RATE = float(os.environ.get("SIOPG_FAULTS_RATE", "20"))  # ticks per second per worker
WINDOW = float(os.environ.get("SIOPG_FAULTS_WINDOW", "60"))
CONTROL = os.environ.get("SIOPG_FAULTS_CONTROL", "")
PRODUCER = str(os.getpid())

io = siopg.Server(connection_state_recovery=siopg.Recovery(max_disconnection_duration=WINDOW))
_ticker: list[asyncio.Task[None]] = []  # the one ticker task of this worker (a reference keeps it alive)


def _running() -> bool:
    try:
        with open(CONTROL) as f:
            return f.read().strip() == "run"
    except OSError:
        return False


async def _tick() -> None:
    """Broadcast ("tick", producer, n) every 1/RATE s while the control file says "run"."""
    n = 0
    loop = asyncio.get_running_loop()
    period = 1.0 / RATE
    next_at = loop.time()
    while True:
        next_at += period
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        if _running():
            io.emit("tick", PRODUCER, n)
            n += 1
        else:
            next_at = loop.time()


@io.on("connection")
def on_connection(socket: Any) -> None:
    if not _ticker:
        _ticker.append(asyncio.get_running_loop().create_task(_tick(), name="faults-ticker"))
