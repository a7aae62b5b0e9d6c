"""Red-team cluster member of the fix2 tests: redteam_app.py plus

* "setodd": stores a value msgpack cannot pack (a datetime) in `socket.data`, as an app may;
* TEST ONLY: `FIX2_AFTER_CLAIM_DELAY=<seconds>` sleeps between a restore's claim of the
  session row and the attach of its socket (`PostgresNamespaceAdapter.after_claim`), so a
  third server can ask for the session inside that gap.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from typing import Any

from redteam_app import io

from siopg.adapter.postgres.namespace import PostgresNamespaceAdapter

DELAY = float(os.environ.get("FIX2_AFTER_CLAIM_DELAY", "0"))
if DELAY > 0:

    async def _after_claim() -> None:
        await asyncio.sleep(DELAY)

    PostgresNamespaceAdapter.after_claim = staticmethod(_after_claim)


@io.on("connection")
async def on_connection(socket: Any) -> None:
    @socket.on("setodd")
    def setodd(ack: Any = None) -> None:
        socket.data = {"when": datetime.datetime(2024, 1, 2, 3, 4, 5)}
        if ack:
            ack(True)


__all__ = ["io"]
