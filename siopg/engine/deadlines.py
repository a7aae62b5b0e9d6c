"""DeadlineQueue: the sessions' heartbeat and timeout deadlines, on ONE loop timer.

A loop timer per session (uvloop's TimerHandle plus its libuv timer) costs ~660 bytes, for
every idle connection. Here a session's deadline is a small heap entry, and one loop timer
is armed for the earliest. A session moves its deadline a few times per ping interval; the
entry it leaves behind is marked cancelled (it no longer holds the session) and is dropped
when it reaches the top of the heap, or when cancelled entries are most of the heap.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable

log = logging.getLogger("siopg.engine")


class Deadline:
    """One armed deadline: `callback` runs once `when` (loop time) has come, unless cancelled."""

    __slots__ = ("callback", "seq", "when")

    def __init__(self, when: float, seq: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.seq = seq  # equal times run in the order they were set, as loop.call_at does
        self.callback: Callable[[], None] | None = callback

    def __lt__(self, other: Deadline) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class DeadlineQueue:
    """Deadlines of many sessions behind one loop timer (one queue per EngineServer)."""

    __slots__ = ("_cancelled", "_heap", "_seq", "_timer", "_timer_at", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[Deadline] = []
        self._seq = 0
        self._cancelled = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        """Armed (not cancelled) deadlines."""
        return len(self._heap) - self._cancelled

    def add(self, when: float, callback: Callable[[], None]) -> Deadline:
        self._seq += 1
        entry = Deadline(when, self._seq, callback)
        heapq.heappush(self._heap, entry)
        if self._timer is None or when < self._timer_at:
            self._arm(when)
        return entry

    def cancel(self, entry: Deadline) -> None:
        if entry.callback is None:
            return
        entry.callback = None
        self._cancelled += 1
        heap = self._heap
        if self._cancelled == len(heap):  # nothing armed: no timer left behind
            heap.clear()
            self._cancelled = 0
            self._disarm()
        elif self._cancelled > 64 and self._cancelled * 2 > len(heap):
            self._heap = [e for e in heap if e.callback is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _arm(self, when: float) -> None:
        self._disarm()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._run)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        self._timer = None
        heap = self._heap
        now = self.loop.time()
        due: list[Callable[[], None]] = []
        while heap and (heap[0].when <= now or heap[0].callback is None):
            entry = heapq.heappop(heap)
            callback = entry.callback
            if callback is None:
                self._cancelled -= 1
                continue
            entry.callback = None
            due.append(callback)
        # deadlines the callbacks set (even ones already due) wait for the next timer
        if heap and self._timer is None:
            self._arm(heap[0].when)
        for callback in due:
            try:
                callback()
            except Exception:  # one session's failure must not strand the others
                log.exception("engine deadline callback failed")
