"""Red team 9: viewers of a dashboard whose database stalls.

A real `siopg dashboard --database-url` process reaches Postgres through a FaultProxy, which
then blackholes. Each read of the board may take READ_TIMEOUT (3 s); before the fix the
viewers' requests queued on one lock and each retried the read in turn, so the tenth
concurrent viewer waited ~30 s for its 503. A failed read must answer every viewer waiting
for it, and the page must come back once the database does.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

import aiohttp
from faults.conftest import private_pg  # noqa: F401  (fixture)
from faults.harness import FaultProxy, PrivatePostgres

from hostile.server_fixtures import ROOT
from hostile.supervisor_helpers import free_port
from siopg.adapter.postgres.migrations import migrate_dsn
from siopg.dashboard.web import READ_TIMEOUT

VIEWERS = 8


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=60)) as resp:
        await resp.read()
        return resp.status


async def _until_listening(port: int, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(20):
        while proc.returncode is None:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
    raise AssertionError("the dashboard exited")


async def _scenario(pg: PrivatePostgres) -> None:
    await migrate_dsn(pg.dsn, "siopg")
    # the private Postgres may listen on a Unix socket only (embedded): the proxy speaks TCP
    proxy = await FaultProxy(pg.upstream()).start()
    port = free_port()
    via = f"postgresql://postgres@127.0.0.1:{proxy.port}/{urlsplit(pg.dsn).path.lstrip('/') or 'postgres'}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "siopg", "dashboard", "--database-url", via, "--port", str(port),
        cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/dashboard/stats.json"
    try:
        await _until_listening(port, proc)
        async with aiohttp.ClientSession() as session:
            assert await _status(session, url) == 200
            proxy.stall()
            await asyncio.sleep(0.6)  # past the shared reading's MIN_INTERVAL: the next one reads
            started = time.monotonic()
            statuses = await asyncio.gather(*(_status(session, url) for _ in range(VIEWERS)))
            took = time.monotonic() - started
            assert statuses == [503] * VIEWERS
            assert took < 2 * READ_TIMEOUT + 1, f"{VIEWERS} viewers answered after {took:.1f}s"
            proxy.resume()
            proxy.cut_all()  # the stalled connections go; the pool opens new ones

            async def back() -> None:
                while await _status(session, url) != 200:  # each 503 came from a read that failed
                    pass

            await asyncio.wait_for(back(), 20)
            async with session.get(url) as resp:
                assert json.loads(await resp.read())["servers"] == []
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await proxy.close()


def test_viewers_of_a_stalled_database_all_get_their_answer_in_one_read_timeout(
    private_pg: PrivatePostgres,  # noqa: F811
) -> None:
    asyncio.run(_scenario(private_pg))
