"""siopg side of bench/fanout.py; bench/apps/node_fanout.mjs is its twin.

A control client emits "start" {n, window, rate, procs, pad}; the server then
broadcasts n "tick" {seq, t} events to everyone, then "done". t is the send time
in CLOCK_MONOTONIC microseconds (time.monotonic_ns, the clock Node's hrtime reads).
  rate > 0:  paced at `rate` broadcasts per second.
  otherwise: as fast as the clients take them, keeping at most `window`
             broadcasts in flight ahead of the slowest load process, from the
             "progress" {p, d} reports (d = deliveries counted by process p).
Run: python -m siopg serve bench/apps/siopg_fanout.py:io --port PORT
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from typing import Any

import siopg

io = siopg.Server()

# Experiment knobs, off by default (the published numbers use siopg's defaults):
# SIOPG_BENCH_GC="freeze" or "t0,t1,t2" (gc.set_threshold) or "off";
# with PYTHONTRACEMALLOC set, SIGUSR1 writes the top allocation sites to SIOPG_BENCH_TRACEMALLOC_OUT.
_gc = os.environ.get("SIOPG_BENCH_GC", "")
if _gc == "off":
    gc.disable()
elif _gc == "freeze":
    gc.freeze()
elif _gc:
    gc.set_threshold(*(int(x) for x in _gc.split(",")))


_first_snapshot: list[Any] = []


def _dump_allocations(_signum: int, _frame: Any) -> None:
    """First SIGUSR1: remember a tracemalloc snapshot; later ones: write the growth since then."""
    import tracemalloc

    if not tracemalloc.is_tracing():
        return
    snap = tracemalloc.take_snapshot()
    if not _first_snapshot:
        _first_snapshot.append(snap)
        return
    out = os.environ.get("SIOPG_BENCH_TRACEMALLOC_OUT", "/dev/stderr")
    stats = snap.compare_to(_first_snapshot[0], "lineno")
    with open(out, "a") as f:
        f.write(f"--- grew by {sum(s.size_diff for s in stats)} bytes, {sum(s.count_diff for s in stats)} blocks\n")
        for stat in stats[:45]:
            f.write(f"{stat}\n")
        f.write("--- by file\n")
        for stat in snap.compare_to(_first_snapshot[0], "filename")[:30]:
            f.write(f"{stat}\n")


signal.signal(signal.SIGUSR1, _dump_allocations)


def _batch_flushes() -> None:
    """Experiment (SIOPG_BENCH_BATCH_FLUSH=1): one call_soon per loop tick for all dirty
    connections instead of one per connection. Patches a private method; for measuring only."""
    from siopg.engine.socket import EngineSocket

    dirty: list[Any] = []

    def flush_all() -> None:
        batch = dirty[:]
        dirty.clear()
        for conn in batch:
            conn._flush()

    def request_flush(self: Any) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if not dirty:
                self._loop.call_soon(flush_all)
            dirty.append(self)

    EngineSocket.request_flush = request_flush  # type: ignore[method-assign]


if os.environ.get("SIOPG_BENCH_BATCH_FLUSH"):
    _batch_flushes()
_delivered: list[int] = []
_progress = asyncio.Event()
_running = False
_tasks: set[asyncio.Task[None]] = set()


def _now_us() -> int:
    return time.monotonic_ns() // 1000


async def _run(cfg: dict[str, Any]) -> None:
    n: int = cfg["n"]
    procs: list[int] = cfg["procs"]
    window: int = cfg.get("window") or 0
    rate: float = cfg.get("rate") or 0
    pad = "x" * cfg["pad"] if cfg.get("pad") else None
    window_on = window > 0
    _delivered[:] = [0] * len(procs)

    def min_avg() -> float:
        return min(d / c for d, c in zip(_delivered, procs))

    async def emit(seq: int) -> None:
        msg: dict[str, Any] = {"seq": seq, "t": _now_us()}
        if pad:
            msg["pad"] = pad
        await io.emit("tick", msg)

    t0 = _now_us()
    seq = 0
    while seq < n:
        if rate > 0:
            due = min(n, int((_now_us() - t0) * rate / 1e6) + 1)
            while seq < due:
                await emit(seq)
                seq += 1
            next_us = t0 + seq * 1e6 / rate
            await asyncio.sleep(max(0.0, (next_us - _now_us()) / 1e6))
        else:
            while seq < n and (not window_on or seq - min_avg() < window):
                await emit(seq)
                seq += 1
            if seq < n:
                _progress.clear()
                try:
                    await asyncio.wait_for(_progress.wait(), 5.0)
                except asyncio.TimeoutError:
                    print("no progress for 5 s: window off", file=sys.stderr)
                    window_on = False
    await io.emit("done", {"n": n})


@io.on("connection")
async def _on_connection(socket: siopg.Socket) -> None:
    @socket.on("start")
    async def _start(cfg: dict[str, Any], ack: Any = None) -> None:
        global _running
        if _running:
            return
        _running = True

        async def go() -> None:
            global _running
            try:
                await _run(cfg)
            finally:
                _running = False

        task = asyncio.get_running_loop().create_task(go())
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    @socket.on("progress")
    def _progress_report(m: dict[str, Any], ack: Any = None) -> None:
        p = m["p"]
        if p < len(_delivered):
            _delivered[p] = m["d"]
        _progress.set()
