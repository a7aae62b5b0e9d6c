"""Worker processes: spawn, balance, restart with backoff, roll, drain.

Each worker has a unique id for the supervisor's lifetime (it prefixes the sids it issues) and
a slot (0..N-1) that a replacement takes over. Ids are never reused, so a request for a
session of a worker that is gone is refused at the supervisor instead of reaching a stranger.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from siopg._tasks import TaskSet
from siopg.supervisor import channel, httphead
from siopg.supervisor.sid import worker_of
from siopg.supervisor.worker import ENV_APP, ENV_FD, ENV_GRACE, ENV_ID

log = logging.getLogger("siopg.supervisor")


class State(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    DEAD = "dead"


class WorkerHandle:
    def __init__(self, wid: int, slot: int) -> None:
        self.wid = wid
        self.slot = slot
        self.state = State.STARTING
        self.proc: asyncio.subprocess.Process | None = None
        self.end: channel.SupervisorEnd | None = None
        self.load = 0          # open connections, as last reported by the worker
        self.assigned = 0      # new sessions sent since that report
        self.retiring = False  # to be replaced by a rolling restart: no new sessions if avoidable
        self.waiting_db = False  # started, but waiting for its database: gets no new connection
        self.started = time.monotonic()
        self.last_seen = self.started  # any message from the worker proves its loop runs
        self.ready = asyncio.get_running_loop().create_future()
        self.exited = asyncio.get_running_loop().create_future()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    on_metrics: Callable[[str, bytes], None] | None = None

    def on_message(self, msg: bytes) -> None:
        self.last_seen = time.monotonic()
        kind = msg[:1]
        if kind == channel.METRICS_REPLY or kind == channel.METRICS_MORE:
            if self.on_metrics is not None:
                self.on_metrics(str(self.wid), msg)  # the worker id, as in the logs
            return
        if kind == channel.WAITING and self.state is State.STARTING:
            if not self.waiting_db:
                self.waiting_db = True
                log.warning("worker %d (slot %d, pid %s) is waiting for the database; not ready",
                            self.wid, self.slot, self.pid)
            return
        if kind == channel.LOAD:
            try:
                self.load = int(msg[1:])
            except ValueError:
                return
            self.assigned = 0
        elif kind == channel.READY and self.state is State.STARTING:
            self.state = State.READY
            self.waiting_db = False
            if not self.ready.done():
                self.ready.set_result(True)
            log.info("worker %d ready (slot %d, pid %s)", self.wid, self.slot, self.pid)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass


class WorkerPool:
    def __init__(
        self, size: int, env: dict[str, str], grace: float, ready_timeout: float, hang_timeout: float = 30.0
    ) -> None:
        self.size = size
        self.hang_timeout = hang_timeout
        self.env = env
        self.grace = grace
        self.ready_timeout = ready_timeout
        self.workers: dict[int, WorkerHandle] = {}
        self.slots: list[WorkerHandle | None] = [None] * size
        self._ids = itertools.count(1)
        self._rr = 0
        self._failures = [0] * size
        self._restart_timers: dict[int, asyncio.TimerHandle] = {}
        self._rolling: asyncio.Lock = asyncio.Lock()
        self.stopping = False
        self.ever_ready = False
        self.on_fatal: Callable[[str], None] = lambda why: None
        self.restarts = 0
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks = TaskSet(log)  # worker watchers and delayed restarts
        self.on_metrics: Callable[[str, bytes], None] | None = None

    # spawning --------------------------------------------------------------------------
    async def spawn(self, slot: int, take_slot: bool = True) -> WorkerHandle:
        """Start a worker for `slot`; with `take_slot=False` (a rolling restart's candidate) it
        takes the slot only once `adopt` is called, so a candidate that dies leaves the slot
        (and the worker in it) alone."""
        loop = asyncio.get_running_loop()
        w = WorkerHandle(next(self._ids), slot)
        w.on_metrics = self.on_metrics
        parent, child = channel.channel_pair()
        env = dict(self.env)
        env.update({ENV_ID: str(w.wid), ENV_FD: str(child.fileno()), ENV_GRACE: str(self.grace)})
        try:
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "siopg.supervisor.worker_main",
                env=env, pass_fds=(child.fileno(),), start_new_session=True,
            )
        except BaseException:
            parent.close()
            child.close()
            raise
        child.close()
        w.end = channel.SupervisorEnd(loop, parent, w.on_message, lambda: None)
        self.workers[w.wid] = w
        if take_slot:
            self.slots[slot] = w
        log.info("worker %d starting (slot %d, pid %d)", w.wid, slot, w.pid)
        self._tasks.spawn(self._watch(w), f"watch worker {w.wid}")
        return w

    async def start(self) -> None:
        for slot in range(self.size):
            await self.spawn(slot)
        if self.hang_timeout > 0:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_hangs())

    async def _watch_hangs(self) -> None:
        """Kill a worker whose event loop stopped answering (it reports every 0.5 s)."""
        while not self.stopping:
            await asyncio.sleep(min(1.0, self.hang_timeout / 4))
            now = time.monotonic()
            for w in list(self.workers.values()):
                if w.state is State.READY and now - w.last_seen > self.hang_timeout:
                    log.error("worker %d (pid %s) has not answered for %.0fs: its event loop is blocked;"
                              " killing it", w.wid, w.pid, now - w.last_seen)
                    w.last_seen = now
                    w.signal(signal.SIGKILL)

    async def _watch(self, w: WorkerHandle) -> None:
        assert w.proc is not None
        code = await w.proc.wait()
        prev = w.state
        w.state = State.DEAD
        if w.end is not None:
            w.end.close()
        self.workers.pop(w.wid, None)
        if not w.ready.done():
            w.ready.set_result(False)
        w.exited.set_result(code)
        expected = prev is State.DRAINING or self.stopping
        lifetime = time.monotonic() - w.started
        if expected:
            log.info("worker %d exited (code %s)", w.wid, code)
        else:
            log.error("worker %d (slot %d, pid %s) died unexpectedly (code %s) after %.1fs",
                      w.wid, w.slot, w.pid, code, lifetime)
        if self.slots[w.slot] is w:
            self.slots[w.slot] = None
            if not self.stopping:
                if not self.ever_ready and prev is State.STARTING:
                    self.on_fatal(f"worker {w.wid} failed to start (exit code {code}); see its log above")
                    return
                self._schedule_restart(w.slot, lifetime)

    def _schedule_restart(self, slot: int, lifetime: float) -> None:
        if lifetime > 30:
            self._failures[slot] = 0
        self._failures[slot] += 1
        delay = min(0.1 * 2 ** (self._failures[slot] - 1), 30.0)
        log.warning("restarting slot %d in %.1fs (failure %d in a row)", slot, delay, self._failures[slot])
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._restart_timers.pop(slot, None)
            if not self.stopping and self.slots[slot] is None:
                self.restarts += 1
                self._tasks.spawn(self.spawn(slot), f"restart slot {slot}")

        self._restart_timers[slot] = loop.call_later(delay, fire)

    async def wait_ready(self) -> bool:
        """Wait until every slot's first worker is ready (False if one failed)."""
        results = await asyncio.gather(
            *(asyncio.wait_for(asyncio.shield(w.ready), self.ready_timeout) for w in self.slots if w),
            return_exceptions=True,
        )
        ok = all(r is True for r in results)
        if ok:
            self.ever_ready = True
        return ok

    # routing ---------------------------------------------------------------------------
    def current_workers(self) -> list[WorkerHandle]:
        """The worker of each slot (not those a rolling restart is replacing)."""
        return [w for w in self.slots if w is not None and w.state is not State.DEAD]

    def ready_count(self) -> int:
        """Slots whose worker is ready (a rolling restart's candidate counts once it took over)."""
        return sum(1 for w in self.slots if w is not None and w.state is State.READY)

    def pick_new(self) -> WorkerHandle | None:
        """Least connections (reported load plus sessions sent since), round robin on ties."""
        best: WorkerHandle | None = None
        best_score = 0
        candidates = [w for w in self.slots if w is not None and w.state is State.READY]
        if not candidates:
            # Nobody ready yet (starting up, or every worker restarting): queue the connection
            # on a starting worker's channel rather than refuse it; it is read once it is ready.
            # Not on one waiting for its database: that may take long, the client retries.
            candidates = [w for w in self.slots
                          if w is not None and w.state is State.STARTING and not w.waiting_db]
        fresh = [w for w in candidates if not w.retiring]
        if fresh:  # during a rolling restart, sessions that move must move only once
            candidates = fresh
        n = len(candidates)
        if not n:
            return None
        self._rr = (self._rr + 1) % n
        for i in range(n):
            w = candidates[(self._rr + i) % n]
            score = w.load + w.assigned
            if best is None or score < best_score:
                best, best_score = w, score
        return best

    def route(self, head: httphead.RequestHead, data: bytes, conn: socket.socket) -> bytes | None:
        if head.sid is not None:
            wid = worker_of(head.sid)
            w = self.workers.get(wid) if wid is not None else None
            if w is None or w.end is None or w.end.closed or w.state is State.DEAD:
                return httphead.UNKNOWN_SID
        else:
            w = self.pick_new()
            if w is None or w.end is None:
                return httphead.SERVICE_UNAVAILABLE
            w.assigned += 1
        if w.end.send_connection(data, conn):
            return None
        return httphead.SERVICE_UNAVAILABLE

    # rolling restart and shutdown ------------------------------------------------------
    async def rolling_restart(self) -> None:
        """Replace workers one at a time; the new one is ready before the old one drains."""
        if self._rolling.locked():
            log.info("rolling restart already in progress")
            return
        async with self._rolling:
            log.info("rolling restart of %d workers", self.size)
            for w in self.workers.values():
                w.retiring = True
            for slot in range(self.size):
                if self.stopping:
                    return
                # The candidate takes the slot only once ready: until then the old worker keeps
                # it (and its restart-on-death), so a candidate that dies orphans nothing.
                new = await self.spawn(slot, take_slot=False)
                try:
                    ok = await asyncio.wait_for(asyncio.shield(new.ready), self.ready_timeout)
                except TimeoutError:
                    ok = False
                if not ok or self.stopping:
                    if not ok:
                        log.error("rolling restart: new worker %d for slot %d not ready; keeping the old one",
                                  new.wid, slot)
                    new.state = State.DRAINING
                    new.signal(signal.SIGKILL)
                    for w in self.workers.values():
                        w.retiring = False
                    return
                old = self.slots[slot]  # read now: it may have died and been replaced meanwhile
                self.slots[slot] = new
                timer = self._restart_timers.pop(slot, None)
                if timer is not None:  # the old one died meanwhile: the new one replaces it
                    timer.cancel()
                if old is not None and old.state is not State.DEAD:
                    await self.drain(old)
            log.info("rolling restart done")

    async def drain(self, w: WorkerHandle) -> None:
        w.state = State.DRAINING
        w.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(w.exited), self.grace + 2)
        except TimeoutError:
            log.warning("worker %d did not drain within %.1fs; killing it", w.wid, self.grace)
            w.signal(signal.SIGKILL)
            await w.exited

    async def stop(self) -> None:
        self.stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for t in self._restart_timers.values():
            t.cancel()
        self._restart_timers.clear()
        live = [w for w in self.workers.values() if w.state is not State.DEAD]
        await asyncio.gather(*(self.drain(w) for w in live))

    def kill_all(self) -> None:
        self.stopping = True
        for w in self.workers.values():
            w.signal(signal.SIGKILL)


def worker_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.pop(ENV_ID, None)
    env.pop(ENV_FD, None)
    env.pop(ENV_APP, None)
    # Workers must import the same siopg as the supervisor, wherever the user's cwd is.
    import siopg

    root = str(Path(next(iter(siopg.__path__))).resolve().parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env
