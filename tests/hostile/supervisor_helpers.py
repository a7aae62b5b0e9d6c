"""Shared by tests/hostile/test_supervisor_*.py: real `siopg serve --workers N` processes.

Reuses tests/supervisor/sv_helpers.py (the process wrapper) and gives each test module a
database of its own on the test server, so these multi-process tests never share a schema.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

_SUPERVISOR_TESTS = Path(__file__).resolve().parents[1] / "supervisor"
if str(_SUPERVISOR_TESTS) not in sys.path:
    sys.path.insert(0, str(_SUPERVISOR_TESTS))

from sv_helpers import STANDIN_APP, Supervisor, free_port, http_raw

__all__ = [
    "DYNAMIC_APP",
    "STANDIN_APP",
    "Supervisor",
    "free_port",
    "http_raw",
    "private_database",
    "supervisors",
    "wait_until",
]

# A siopg.Server whose dynamic namespaces accept any name (the hostile part: clients choose
# them). The server's bounds on names and on namespaces per connection are lifted so the
# metrics path is tested with the worst names and the most labels a deployment could allow.
DYNAMIC_APP = '''
import os, re
import siopg
from siopg.supervisor import worker_id

kw = {"max_namespace_length": 1 << 21, "max_namespaces_per_connection": 1000}
io = siopg.Server(cors_allowed_origins="*", connection_state_recovery=siopg.Recovery(), **kw)
io.of(re.compile(r"^/dyn-"))
VERSION = "v1"


@io.on("connection")
async def connection(socket):
    @socket.on("whoami")
    async def whoami(data=None, ack=None):
        if ack:
            ack({"worker": worker_id(), "pid": os.getpid(), "version": VERSION})
'''


async def _admin(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def private_database(pg_dsn: str) -> Iterator[str]:
    """A fresh database on the test server (dropped afterwards), migrated by the supervisor."""
    name = "siopg_hsv_" + secrets.token_hex(4)
    asyncio.run(_admin(pg_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(pg_dsn)._replace(path="/" + name))
    finally:
        asyncio.run(_admin(pg_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    """Start `siopg serve --workers N` processes; every one is stopped at teardown."""
    started: list[Supervisor] = []

    def start(app: str, workers: int, *args: str, **kw: object) -> Supervisor:
        extra = list(args)
        if "--data-dir" not in extra:
            extra += ["--data-dir", str(tmp_path / f"data{len(started)}")]
        sv = Supervisor(app, workers, *extra, **kw)  # type: ignore[arg-type]
        started.append(sv)
        return sv

    yield start
    for sv in started:
        sv.stop()


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
