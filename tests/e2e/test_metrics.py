"""/metrics of a real `siopg serve --metrics` process (in-memory adapter) after real traffic."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

import siopg

from .conftest import APPS, BACKEND, ServerProcess
from .metrics_flow import check_samples, done, exercise, scrape, scrape_until

pytestmark = pytest.mark.skipif(BACKEND == "node", reason="siopg's own metrics")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess("recovery_2s", APPS / "recovery_2s.py", ("--metrics",))
    try:
        proc.wait_ready()
        yield proc
    finally:
        code = proc.stop()
        logs = proc.logs()
        proc.discard()
    assert code == 0 and "Traceback" not in logs, logs[-4000:]


async def test_new_metrics_after_real_traffic(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        before = await scrape(http, server.url)
        seen = await exercise(http, server.url, window=2.0)
        after = await scrape_until(http, server.url, done)
    assert seen == {"forged": "offset_invalid", "unknown": "unknown_session", "recovered": (True, None),
                    "expired": "expired"}
    check_samples(before, after, siopg.__version__)
