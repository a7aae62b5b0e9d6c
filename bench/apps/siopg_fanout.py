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

import gc
import os
import signal
from typing import Any

import _instruments
from _siopg_fanout_common import Fanout

import siopg

io = siopg.Server(write_coalesce_ms=float(os.environ.get("SIOPG_BENCH_WRITE_COALESCE_MS") or 0))

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


_instruments.install(io)  # SIOPG_BENCH_STATS=file: SIGUSR2 dumps gc/deliver/flush/loop-lag counters
Fanout().serve(io, forward=False)
