"""A cluster member with no clients, for bench/log_ceiling.py: it only reads the log.

Counts, for the harness, what reading the Postgres log costs a worker: every row it reads
(none has a recipient here: no clients), the LISTEN notifications that woke it, the catch-up
reads they caused, and the time each row was handed to the router (CLOCK_MONOTONIC us, to be
joined with the Emitter's commit times by row id) with the send time the payload carries
("chat" events whose first argument is an int). SIGUSR2 writes $SIOPG_BENCH_LOG_OUT/<pid>.json
and starts a new window.
With SIOPG_BENCH_PUBLISH={"rate", "seconds", "rooms", "size"} this member is the publisher
instead: SIGUSR1 starts io.to(room).emit("chat", send_time_us, payload) through the server's
own batching publisher, at `rate` emits/s on a fixed schedule (0: as fast as Postgres takes
them, keeping at most 2000 waiting).
Env: SIOPG_BENCH_DSN, SIOPG_BENCH_SCHEMA, SIOPG_BENCH_LOG_OUT.
Run: python -m siopg serve bench/apps/siopg_log_worker.py:io --port PORT
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from array import array
from typing import Any

import siopg
from siopg.adapter.cluster import ClusterMessage
from siopg.adapter.postgres.listener import LogListener
from siopg.adapter.postgres.namespace import PostgresNamespaceAdapter
from siopg.adapter.postgres.router import LogRouter

_reads = array("q")  # row id, read time (us), row id, read time, ...
_sent_to_read = array("q")  # us from the "chat" payload's send time to its delivery here
_counts = {"catch_ups": 0, "rows": 0, "published": 0}
_listeners: list[LogListener] = []
_loop: list[asyncio.AbstractEventLoop] = []


def now_us() -> int:
    return time.monotonic_ns() // 1000


def _patch() -> None:
    on_row, catch_up, start = LogRouter.on_row, LogListener._catch_up, LogListener.start
    on_message = PostgresNamespaceAdapter.on_message

    def counted_on_row(self: LogRouter, row: Any) -> None:
        _reads.append(row["id"])
        _reads.append(now_us())
        _counts["rows"] += 1
        on_row(self, row)

    def timed_on_message(self: PostgresNamespaceAdapter, message: ClusterMessage, offset: str | None = None) -> None:
        packet = message.data.get("packet") if isinstance(message.data, dict) else None
        if packet and packet[0] == "chat" and isinstance(packet[1], int):
            _sent_to_read.append(now_us() - packet[1])
        on_message(self, message, offset)

    async def counted_catch_up(self: LogListener) -> None:
        _counts["catch_ups"] += 1
        await catch_up(self)

    async def remembered_start(self: LogListener) -> None:
        _listeners.append(self)
        _loop[:] = [asyncio.get_running_loop()]
        await start(self)

    LogRouter.on_row = counted_on_row  # type: ignore[method-assign]
    PostgresNamespaceAdapter.on_message = timed_on_message  # type: ignore[method-assign]
    LogListener._catch_up = counted_catch_up  # type: ignore[method-assign]
    LogListener.start = remembered_start  # type: ignore[method-assign]


def _dump(_signum: int, _frame: Any) -> None:
    out = {"pid": os.getpid(), "cpu_s": time.process_time(), **_counts,
           "notifications": sum(lsn.notifications for lsn in _listeners), "reads": _reads.tolist(),
           "sent_to_read": _sent_to_read.tolist()}
    path = os.path.join(os.environ["SIOPG_BENCH_LOG_OUT"], f"{os.getpid()}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(path + ".tmp", path)
    del _reads[:]
    del _sent_to_read[:]


async def _publish(cfg: dict[str, Any]) -> None:
    """Room emits through this server's publisher on a fixed schedule (or flooding)."""
    publisher = factory.cluster.publisher
    rate, rooms, payload = cfg["rate"], cfg["rooms"], "x" * cfg["size"]
    t0 = now_us() + 20_000
    end = t0 + int(cfg["seconds"] * 1e6)
    k = 0
    while True:
        if rate > 0:
            due = t0 + int(k * 1e6 / rate)
            if due >= end:
                break
            if due > now_us():
                await asyncio.sleep((due - now_us()) / 1e6)
        else:
            if now_us() >= end:
                break
            if publisher.pending > 2000:
                await asyncio.sleep(0.001)
                continue
        io.to(f"room{k % rooms}").emit("chat", now_us(), payload)
        k += 1
        _counts["published"] = k
        if rate <= 0 and k % 100 == 0:
            await asyncio.sleep(0)
    await publisher.flush(30)


def _start_publishing(_signum: int, _frame: Any) -> None:
    cfg = json.loads(os.environ["SIOPG_BENCH_PUBLISH"])
    _loop[0].call_soon_threadsafe(lambda: _tasks.add(_loop[0].create_task(_publish(cfg))))


_tasks: set[asyncio.Task[None]] = set()
_patch()
signal.signal(signal.SIGUSR2, _dump)
if os.environ.get("SIOPG_BENCH_PUBLISH"):
    signal.signal(signal.SIGUSR1, _start_publishing)
factory = siopg.PostgresAdapter(os.environ["SIOPG_BENCH_DSN"], schema=os.environ["SIOPG_BENCH_SCHEMA"])
io = siopg.Server(adapter=factory)
