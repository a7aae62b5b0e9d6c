"""siopg side of bench/workers_fanout.py (twin: bench/apps/node_sticky_cluster.mjs).

Served by `siopg serve bench/apps/siopg_workers_app.py:io --workers 2`: every worker imports
this module. The adapter comes from the supervisor (its --database-url or the embedded
PostgreSQL) unless SIOPG_BENCH_DSN and SIOPG_BENCH_SCHEMA are set, in which case the app
builds its own adapter on that schema, so a benchmark run never shares a schema (or its
NOTIFY channel) with anything else using the same database (SIOPG_BENCH_ASYNC_COMMIT=1 then
turns synchronous_commit off, an experiment; the published numbers keep the default).

Per connection: "welcome" {seq} right in the connection handler, so a client that never
sees it lost its first message. The control client's "start" {n, window, rate, rate_n,
procs} makes the worker that received it broadcast through the cluster:
  phase 0  n "tick" {seq, t, ph: 0}, at most `window` in flight ahead of the slowest load
           process (from "progress" {p, d} reports, forwarded to every worker);
  phase 1  after phase 0 is fully delivered, rate_n ticks {ph: 1} paced at `rate`/s;
then "done". t is CLOCK_MONOTONIC microseconds, the clock Node's hrtime reads.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

from _siopg_fanout_common import Fanout, now_us

import siopg

_dsn = os.environ.get("SIOPG_BENCH_DSN")
_schema = os.environ.get("SIOPG_BENCH_SCHEMA")
_async_commit = os.environ.get("SIOPG_BENCH_ASYNC_COMMIT") == "1"  # experiment knob, off by default
io = siopg.Server(
    adapter=siopg.PostgresAdapter(_dsn, schema=_schema, synchronous_commit=not _async_commit)
    if _dsn and _schema else None
)

_welcome_seq = itertools.count()
_fanout = Fanout()


async def _run(cfg: dict[str, Any]) -> None:
    n: int = cfg["n"]
    rate_n: int = cfg.get("rate_n") or 0
    rate: float = cfg.get("rate") or 0.0
    _fanout.reset(cfg["procs"])

    def emit(seq: int, ph: int = 0) -> None:
        io.emit("tick", {"seq": seq, "t": now_us(), "ph": ph})

    await _fanout.windowed(emit, n, cfg.get("window") or 0)  # phase 0: throughput under a window
    if rate_n:
        deadline = time.monotonic() + 30.0  # drain phase 0 before the paced phase
        while _fanout.min_avg() < n and time.monotonic() < deadline:
            await _fanout.wait_progress(1.0)
        t0 = now_us()
        for i in range(rate_n):  # phase 1: paced, for latency
            await asyncio.sleep(max(0.0, (t0 + i * 1e6 / rate - now_us()) / 1e6))
            emit(n + i, 1)
    io.emit("done", {"n": n + rate_n})


io.on("progress", _fanout.on_progress)  # forwarded by the other workers


@io.on("connection")
async def _on_connection(socket: siopg.Socket) -> None:
    socket.emit("welcome", {"seq": next(_welcome_seq)})

    @socket.on("hello")
    def _hello(m: Any, ack: Any = None) -> None:  # the client's first message, acknowledged
        if ack:
            ack(m)

    @socket.on("start")
    def _start(cfg: dict[str, Any], ack: Any = None) -> None:
        _fanout.start(lambda: _run(cfg))

    @socket.on("progress")
    def _progress_report(m: dict[str, Any], ack: Any = None) -> None:
        _fanout.on_progress(m)
        io.server_side_emit("progress", m)
