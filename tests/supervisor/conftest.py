"""Fixtures for the multi-worker tests: real supervisor processes on free loopback ports."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sv_helpers import STANDIN_APP, Supervisor  # noqa: E402


@pytest.fixture(scope="session")
def sv_dsn(pg_dsn: str) -> Iterator[str]:
    """A database of our own on the test server, migrated fresh by the first supervisor.

    Other suites share `pg_dsn`'s database and schema; a private one keeps these multi-process
    tests independent of whatever schema version is already there.
    """
    import asyncio
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    name = "siopg_sv_" + secrets.token_hex(4)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    parts = urlsplit(pg_dsn)
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def supervisor_factory(sv_dsn: str, tmp_path: Path) -> Iterator:
    """Start supervisors (stopped at teardown); the database is the test session's."""
    started: list[Supervisor] = []

    def start(app: str = STANDIN_APP, workers: int = 2, *args: str, **kw) -> Supervisor:
        extra = list(args)
        if "--database-url" not in extra:
            extra += ["--database-url", sv_dsn]
        if "--data-dir" not in extra:
            extra += ["--data-dir", str(tmp_path / "data")]
        sv = Supervisor(app, workers, *extra, **kw)
        started.append(sv)
        return sv

    yield start
    for sv in started:
        sv.stop()
