"""Shared pieces of the pg-session hostile tests (real Postgres, real siopg processes, the
official JS client). Fixtures are re-exported from tests/pg so test modules can import them."""

from __future__ import annotations

import os
from typing import Any

import asyncpg
import pytest

from pg.conftest import conn, js, node_driver, nodes, schema  # noqa: F401  (fixtures)
from pg.harness import ServerProcess, eventually

from siopg.adapter.postgres.migrations import quote_ident


@pytest.fixture
async def procs(pg_dsn: str, schema: str):  # type: ignore[no-untyped-def]  # noqa: F811
    """`await procs("A", **env)`: a `siopg serve` process of tests/pg/apps/cluster_app.py."""
    started: list[ServerProcess] = []

    async def start(name: str, **env: str) -> ServerProcess:
        p = ServerProcess(pg_dsn, schema, name, env=env)
        started.append(p)
        return await p.ready()

    yield start
    for p in started:
        await p.stop()
        os.unlink(p.log.name)


async def client(js: Any, url: str, label: str, **opts: Any) -> Any:  # noqa: F811
    c = js.client(label)
    state = await c.connect(url, transports=["websocket"], **opts)
    assert state["connected"], state
    c.sid = state["id"]
    return c


async def session_row(pg_dsn: str, schema: str, sid: str) -> Any:  # noqa: F811
    """The sessions row of socket `sid` (or None)."""
    c = await asyncpg.connect(pg_dsn)
    try:
        return await c.fetchrow(f"SELECT * FROM {quote_ident(schema)}.sessions WHERE sid = $1", sid)
    finally:
        await c.close()


async def wait_rooms(pg_dsn: str, schema: str, sid: str, room: str, timeout: float = 5.0) -> Any:  # noqa: F811
    """Wait until the session row of `sid` lists `room`; returns the row."""

    async def has() -> Any:
        row = await session_row(pg_dsn, schema, sid)
        return row if row is not None and room in row["rooms"] else None

    return await eventually(has, timeout=timeout)


def offsets(events: list[list[Any]]) -> list[int]:
    return [int(args[-1]) for args in events]
