"""asyncio helpers shared by the adapter's background loops (listener, publisher, adapter)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task, then wait until each has finished, so none outlives its owner.

    The tasks' own CancelledError is expected and swallowed; any other error they end with
    propagates. None entries (a loop that never started) are skipped.
    """
    started = [task for task in tasks if task is not None]
    for task in started:
        task.cancel()
    for task in started:
        try:
            await task
        except asyncio.CancelledError:
            pass
