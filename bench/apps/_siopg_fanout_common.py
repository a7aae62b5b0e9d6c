"""The broadcast loop the siopg bench apps share (siopg_fanout, siopg_cluster_fanout,
siopg_workers_app), so the three measure exactly the same sending logic.

A run: "start" {n, window, rate, procs, pad} -> n "tick" {seq, t} broadcasts -> "done".
t is CLOCK_MONOTONIC microseconds (time.monotonic_ns, the clock Node's hrtime reads).
The window keeps at most `window` ticks in flight ahead of the slowest load process, from
its "progress" {p, d} reports (d = deliveries counted by load process p).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import siopg


def now_us() -> int:
    return time.monotonic_ns() // 1000


class Fanout:
    """Per-process run state: delivery counts per load process, and at most one run at a time."""

    def __init__(self) -> None:
        self.delivered: list[int] = []
        self.procs: list[int] = []
        self._progress = asyncio.Event()
        self._running = False
        self._tasks: set[asyncio.Task[None]] = set()

    def on_progress(self, m: dict[str, Any]) -> None:
        """A "progress" {p, d} report: load process p has counted d deliveries."""
        p = m["p"]
        if 0 <= p < len(self.delivered):
            self.delivered[p] = m["d"]
        self._progress.set()

    async def wait_progress(self, timeout: float) -> bool:
        """Wait for the next progress report; False after `timeout` seconds without one."""
        self._progress.clear()
        try:
            await asyncio.wait_for(self._progress.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def reset(self, procs: list[int]) -> None:
        """A new run over load processes holding procs[i] clients each."""
        self.procs = procs
        self.delivered[:] = [0] * len(procs)

    def min_avg(self) -> float:
        """Ticks delivered to every client of the slowest load process, on average."""
        return min(d / c for d, c in zip(self.delivered, self.procs))

    async def windowed(self, emit: Callable[[int], None], n: int, window: int) -> None:
        """emit(0..n-1) as fast as the slowest load process takes them, `window` in flight."""
        window_on = window > 0
        seq = 0
        while seq < n:
            while seq < n and (not window_on or seq - self.min_avg() < window):
                emit(seq)
                seq += 1
            if seq < n and not await self.wait_progress(5.0):
                print("no progress for 5 s: window off", file=sys.stderr)
                window_on = False

    async def run_ticks(self, io: siopg.Server, cfg: dict[str, Any]) -> None:
        """The plain run: n ticks, paced at `rate`/s if rate > 0 else windowed, then "done"."""
        n: int = cfg["n"]
        window: int = cfg.get("window") or 0
        rate: float = cfg.get("rate") or 0
        pad = "x" * cfg["pad"] if cfg.get("pad") else None
        self.reset(cfg["procs"])

        def emit(seq: int) -> None:
            msg: dict[str, Any] = {"seq": seq, "t": now_us()}
            if pad:
                msg["pad"] = pad
            io.emit("tick", msg)

        if rate > 0:
            t0 = now_us()
            seq = 0
            while seq < n:
                due = min(n, int((now_us() - t0) * rate / 1e6) + 1)
                while seq < due:
                    emit(seq)
                    seq += 1
                await asyncio.sleep(max(0.0, (t0 + seq * 1e6 / rate - now_us()) / 1e6))
        else:
            await self.windowed(emit, n, window)
        io.emit("done", {"n": n})

    def start(self, run: Callable[[], Awaitable[None]]) -> None:
        """Begin run() as a task unless a run is already going (a second "start" is ignored)."""
        if self._running:
            return
        self._running = True

        async def go() -> None:
            try:
                await run()
            finally:
                self._running = False

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def serve(self, io: siopg.Server, *, forward: bool) -> None:
        """Answer "start" with run_ticks and count "progress" reports; with `forward` (a cluster
        member), relay each report to the other servers, which count it too."""
        if forward:
            io.on("progress", self.on_progress)  # relayed by the other servers

        @io.on("connection")
        async def _on_connection(socket: siopg.Socket) -> None:
            @socket.on("start")
            def _start(cfg: dict[str, Any], ack: Any = None) -> None:
                self.start(lambda: self.run_ticks(io, cfg))

            @socket.on("progress")
            def _progress_report(m: dict[str, Any], ack: Any = None) -> None:
                self.on_progress(m)
                if forward:
                    io.server_side_emit("progress", m)
