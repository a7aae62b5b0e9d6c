"""The one task set for background work, in every layer.

asyncio keeps tasks only weakly, so a task nobody references can be garbage collected while
it runs, and a failure nobody retrieves surfaces only as "Task exception was never retrieved"
at collection time. Every coroutine siopg starts in the background (handlers, room listeners,
error handlers, worker supervision...) goes through a `TaskSet`, which keeps it until it ends,
logs its failure to the owner's logger, and lets the owner wait for it on close.

It lives in the bottom layer so the adapter and the supervisor use the same one as the server
(`siopg.server.tasks` re-exports it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_default_logger = logging.getLogger("siopg")


class TaskSet:
    """Keeps strong references to background tasks and logs their failures."""

    __slots__ = ("_logger", "_tasks")

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._logger = logger if logger is not None else _default_logger

    def spawn(self, coro: Coroutine[Any, Any, T] | Awaitable[T], what: str = "handler") -> asyncio.Task[T]:
        """Run `coro` in the background, named `what`; kept until it ends, its failure logged."""
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
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
            self._logger.error("error in %s", task.get_name(), exc_info=exc)

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

    def cancel(self) -> list[asyncio.Task[Any]]:
        """Cancel every running task; returns them (await them to let them finish)."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        return tasks

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)
