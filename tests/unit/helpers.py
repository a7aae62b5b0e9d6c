"""Helpers shared by the server-layer unit tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from aiohttp import web


async def settle() -> None:
    """Let callbacks scheduled by the code under test run (a few loop turns, no sleeping)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def wait_until(predicate: Callable[[], Any], timeout: float = 2.0, interval: float = 0.005) -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(interval)


async def start_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve `app` on a free port of 127.0.0.1: the runner (clean it up) and the port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]
