"""Cheap bench-side instruments for the siopg bench apps: where a server's time goes.

Installed by the siopg bench apps (fanout, cluster fanout, chat) when SIOPG_BENCH_STATS is
set to a file path; each SIGUSR2 then appends one JSON line of cumulative counters to it, so a
harness signals before and after its measured window and subtracts:

  gc_pauses, gc_pause_s, gc_pause_max_s   cyclic-GC pauses (gc.callbacks start/stop pairs)
  deliver_calls, deliver_s                 Namespace.deliver: queueing a broadcast on every
                                           local recipient's connection (no syscalls)
  flush_calls, flush_s, flush_max_s        FlushBatch.run: one loop callback writing every
                                           dirty connection's frames (the write() per client)
  lag_samples, lag_sum_s, lag_max_s,       event-loop lag: how late a 25 ms sleep wakes up,
  lag_over_5ms, lag_over_20ms              sampled for the whole life of the process
  cpu_s                                    this process's CPU (time.process_time)

Each costs two perf_counter calls per broadcast or per loop tick (not per recipient). The
Prometheus metrics of siopg itself (event-loop lag, commit-to-delivery) are separate.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import time
from typing import Any

from siopg.engine.socket import FlushBatch
from siopg.server.namespace import Namespace

_perf = time.perf_counter
STATS: dict[str, float] = dict.fromkeys(
    ("gc_pauses", "gc_pause_s", "gc_pause_max_s", "deliver_calls", "deliver_s", "flush_calls", "flush_s",
     "flush_max_s", "lag_samples", "lag_sum_s", "lag_max_s", "lag_over_5ms", "lag_over_20ms"), 0.0)
_gc_start = [0.0]
_lag_task: list[asyncio.Task[None]] = []


def _on_gc(phase: str, _info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_start[0] = _perf()
        return
    pause = _perf() - _gc_start[0]
    STATS["gc_pauses"] += 1
    STATS["gc_pause_s"] += pause
    STATS["gc_pause_max_s"] = max(STATS["gc_pause_max_s"], pause)


def _wrap_deliver() -> None:
    inner = Namespace.deliver

    def deliver(self: Namespace, *args: Any) -> None:
        t = _perf()
        inner(self, *args)
        STATS["deliver_s"] += _perf() - t
        STATS["deliver_calls"] += 1

    Namespace.deliver = deliver  # type: ignore[method-assign]


def _wrap_flush() -> None:
    inner = FlushBatch.run

    def run(self: FlushBatch) -> None:
        t = _perf()
        inner(self)
        took = _perf() - t
        STATS["flush_s"] += took
        STATS["flush_calls"] += 1
        if took > STATS["flush_max_s"]:
            STATS["flush_max_s"] = took

    FlushBatch.run = run  # type: ignore[method-assign]


async def _sample_lag(interval: float = 0.025) -> None:
    while True:
        t = _perf()
        await asyncio.sleep(interval)
        lag = max(0.0, _perf() - t - interval)
        STATS["lag_samples"] += 1
        STATS["lag_sum_s"] += lag
        STATS["lag_max_s"] = max(STATS["lag_max_s"], lag)
        if lag > 0.005:
            STATS["lag_over_5ms"] += 1
        if lag > 0.02:
            STATS["lag_over_20ms"] += 1


def start_lag_sampler() -> None:
    """Start the loop-lag sampler once, from inside the running loop (e.g. first connection)."""
    if not _lag_task:
        _lag_task.append(asyncio.get_running_loop().create_task(_sample_lag()))


def _dump(_signum: int, _frame: Any) -> None:
    with open(os.environ["SIOPG_BENCH_STATS"], "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "cpu_s": time.process_time(), **STATS}) + "\n")
    for k in STATS:
        if k.endswith("max_s"):
            STATS[k] = 0.0  # maxima are per window: since the previous dump


def install(io: Any) -> bool:
    """Install everything on `io` if SIOPG_BENCH_STATS names a file; True if installed."""
    if not os.environ.get("SIOPG_BENCH_STATS"):
        return False
    gc.callbacks.append(_on_gc)
    _wrap_deliver()
    _wrap_flush()
    signal.signal(signal.SIGUSR2, _dump)
    io.on("connection", lambda _socket: start_lag_sampler())
    return True

