"""Background work of a server: the one task set, and the awaitable that eager calls return.

asyncio keeps tasks only weakly, so a task nobody references can be garbage collected while
it runs. Every coroutine the server layer starts (handler coroutines, connection setup,
session persistence, broadcast server counts...) goes through the server's `TaskSet`, which
keeps it until it ends, logs its failure, and lets `Server.close()` wait for it. `TaskSet`
itself lives in the bottom layer (`siopg._tasks`) so the adapter and supervisor share it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from siopg._tasks import TaskSet

__all__ = ["DONE", "Done", "TaskSet"]


class Done:
    """An already-finished awaitable: emit() works eagerly and may still be awaited."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover  (makes this a generator)


DONE = Done()
