"""Fixtures for tests against a real PostgreSQL: a fresh, migrated schema per test."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from siopg.adapter.postgres.migrations import migrate, quote_ident


@pytest.fixture
async def schema(pg_dsn: str) -> AsyncIterator[str]:
    """A migrated schema with a unique name, dropped after the test."""
    name = "siopg_t_" + secrets.token_hex(4)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate(conn, name)
        yield name
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
        await conn.close()


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(pg_dsn)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture(scope="module")
def node_driver():  # type: ignore[no-untyped-def]
    from e2e.jsclient import DriverProcess

    process = DriverProcess()
    yield process
    process.close()


@pytest.fixture
async def js(node_driver):  # type: ignore[no-untyped-def]
    from e2e.jsclient import JsDriver

    driver = JsDriver(node_driver)
    yield driver
    await driver.aclose()


@pytest.fixture
async def nodes(pg_dsn: str, schema: str):  # type: ignore[no-untyped-def]
    """`await nodes("A")` starts a node on the test's schema; all are stopped at the end."""
    from .harness import Node

    made: list[Node] = []

    async def make(name: str, **kw):  # type: ignore[no-untyped-def]
        node = Node(pg_dsn, schema, name, **kw)
        made.append(node)
        return await node.start()

    yield make
    for node in reversed(made):
        await node.stop()
    for node in made:  # a test expecting errors clears node.errors
        assert not node.errors, f"node {node.name} reported {node.errors!r}"
