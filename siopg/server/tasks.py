"""Background work of a server: the one task set, and the awaitable that eager calls return.

asyncio keeps tasks only weakly, so a task nobody references can be garbage collected while
it runs. Every coroutine the server layer starts (handler coroutines, connection setup,
session persistence, broadcast server counts...) goes through the server's `TaskSet`, which
keeps it until it ends, logs its failure, and lets `Server.close()` wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from typing import Any

logger = logging.getLogger("siopg.server")


class TaskSet:
    """Keeps strong references to background tasks and logs their failures."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any, what: str = "handler") -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        task.set_name(what)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("error in %s", task.get_name(), exc_info=exc)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for the running tasks (then cancel stragglers) so nothing outlives close()."""
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current]
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=timeout)
        for t in still:
            t.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)


class Done:
    """An already-finished awaitable: emit() works eagerly and may still be awaited."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover  (makes this a generator)


DONE = Done()
