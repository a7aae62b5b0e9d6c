"""siopg side of bench/cluster_fanout.py (twin: bench/apps/node_cluster_fanout.mjs).

Like siopg_fanout.py, but a cluster member: every process serves its share of the clients
and the process that receives "start" broadcasts the ticks to the whole cluster through
Postgres. Load processes report "progress" to their own server; servers forward it to the
sender with server_side_emit, which keeps the in-flight window honest across processes.
Env: SIOPG_BENCH_DSN, SIOPG_BENCH_SCHEMA, SIOPG_BENCH_RECOVERY=1 (CSR on: offsets on ticks),
SIOPG_BENCH_ASYNC_COMMIT=1 (synchronous_commit=False).
Run: python -m siopg serve bench/apps/siopg_cluster_fanout.py:io --port PORT
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import siopg

io = siopg.Server(
    adapter=siopg.PostgresAdapter(
        os.environ["SIOPG_BENCH_DSN"],
        schema=os.environ.get("SIOPG_BENCH_SCHEMA", "siopg"),
        synchronous_commit=os.environ.get("SIOPG_BENCH_ASYNC_COMMIT") != "1",
    ),
    connection_state_recovery=siopg.Recovery() if os.environ.get("SIOPG_BENCH_RECOVERY") == "1" else None,
)
_delivered: list[int] = []
_progress = asyncio.Event()
_running = False
_tasks: set[asyncio.Task[None]] = set()


def _now_us() -> int:
    return time.monotonic_ns() // 1000


def _on_progress(m: dict[str, Any]) -> None:
    p = m["p"]
    if p < len(_delivered):
        _delivered[p] = m["d"]
    _progress.set()


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

    def emit(seq: int) -> None:
        msg: dict[str, Any] = {"seq": seq, "t": _now_us()}
        if pad:
            msg["pad"] = pad
        io.emit("tick", msg)

    t0 = _now_us()
    seq = 0
    while seq < n:
        if rate > 0:
            due = min(n, int((_now_us() - t0) * rate / 1e6) + 1)
            while seq < due:
                emit(seq)
                seq += 1
            await asyncio.sleep(max(0.0, (t0 + seq * 1e6 / rate - _now_us()) / 1e6))
        else:
            while seq < n and (not window_on or seq - min_avg() < window):
                emit(seq)
                seq += 1
            if seq < n:
                _progress.clear()
                try:
                    await asyncio.wait_for(_progress.wait(), 5.0)
                except asyncio.TimeoutError:
                    print("no progress for 5 s: window off", file=sys.stderr)
                    window_on = False
    io.emit("done", {"n": n})


io.on("progress", _on_progress)  # forwarded by the other servers


@io.on("connection")
async def _on_connection(socket: siopg.Socket) -> None:
    @socket.on("start")
    def _start(cfg: dict[str, Any], ack: Any = None) -> None:
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
        _on_progress(m)
        io.server_side_emit("progress", m)
