"""Hostile input against the Postgres adapter's own machinery: heartbeats, pruning, NOTIFY
payloads, the migration renderer, SQL emit, and what reaches the logs. Real Postgres throughout."""

from __future__ import annotations

import asyncio
import logging
import secrets
import types
from typing import Any

import asyncpg
import pytest
from pg.conftest import conn, nodes, schema  # noqa: F401 - fixtures
from pg.harness import eventually

from siopg._log import clip
from siopg.adapter.postgres.listener import LogListener, parse_hint
from siopg.adapter.postgres.migrations import channel_name, migrate, quote_ident, render
from siopg.adapter.postgres.store import Store


def _incompressible(n: int) -> str:
    """`n` characters Postgres cannot compress below its ~2.7 kB index entry limit."""
    return "/" + secrets.token_urlsafe(n)[: n - 1]


# a. one namespace's nodes row must not stall the whole heartbeat --------------------------------
async def test_long_or_invalid_namespace_does_not_stall_heartbeat(nodes: Any, conn: asyncpg.Connection,  # noqa: F811
                                                                  schema: str) -> None:  # noqa: F811
    a, b = await nodes("A"), await nodes("B")
    assert await b.io.server_count() == 2
    cluster = a.factory.cluster
    bad = []
    for name in (_incompressible(6000), "/nul\x00name"):
        adapter = a.factory(types.SimpleNamespace(name=name, recovery=None))
        await adapter.init()  # registers and heartbeats the namespace (its row is refused)
        bad.append(adapter)
    q = quote_ident(schema)
    # several heartbeat timeouts later A still counts everywhere, its node is alive for sessions
    await asyncio.sleep(a.factory.heartbeat_timeout + 2 * a.factory.heartbeat_interval)
    assert await b.io.server_count() == 2, "A's '/' row went stale"
    fresh = await conn.fetchval(
        f"SELECT count(*) FROM {q}.nodes WHERE uid = $1 AND last_seen > now() - make_interval(secs => $2)",
        cluster.uid, a.factory.heartbeat_timeout)
    assert fresh >= 2  # its liveness row and '/'
    long_row = await conn.fetchval(f"SELECT count(*) FROM {q}.nodes WHERE uid = $1 AND length(nsp) > 5000", cluster.uid)
    assert long_row == 1, "a long name is stored (indexed by its hash)"
    reports = [str(e) for e in a.errors]
    assert any("cannot be heartbeated" in r for r in reports), reports  # the NUL one, reported once
    assert all(len(r) < 600 for r in reports), "reports are clipped"
    assert sum("cannot be heartbeated" in r for r in reports) == 1
    for adapter in bad:
        await adapter.close()
    a.errors.clear()


# b. pruning keeps up: everything due goes in one pass ------------------------------------------
async def test_prune_removes_a_large_backlog_in_one_pass(nodes: Any, conn: asyncpg.Connection,  # noqa: F811
                                                         schema: str) -> None:  # noqa: F811
    q = quote_ident(schema)
    a = await nodes("A", retention=60.0)
    n = 60_000
    await conn.execute(
        f"INSERT INTO {q}.packets (kind, uid, nsp, recoverable, created_at)"
        " SELECT 3, 'x', '/', true, now() - interval '1 hour' FROM generate_series(1, $1)", n)
    await conn.execute(f"INSERT INTO {q}.packets (kind, uid, nsp, recoverable) VALUES (3, 'x', '/', true)")
    last_expired = await conn.fetchval(f"SELECT max(id) - 1 FROM {q}.packets")
    cluster = a.factory.cluster
    await cluster.pruner.prune()  # one pass, as the cluster runs it every cleanup_interval
    assert await conn.fetchval(f"SELECT count(*) FROM {q}.packets") == 1
    assert await conn.fetchval(f"SELECT pruned_through FROM {q}.log_state") == last_expired
    assert cluster.pruned_packets == n
    assert cluster.log_stats.rows == 1 and cluster.log_stats.oldest_age < 30
    from siopg.metrics import render as render_metrics

    body = render_metrics(a.io.metrics_registry)[0].decode()
    assert f"siopg_pg_log_pruned_total {float(n)}" in body
    assert "siopg_pg_log_rows 1.0" in body and "siopg_pg_log_oldest_seconds" in body


async def test_prune_yields_between_batches(pg_dsn: str, schema: str, conn: asyncpg.Connection) -> None:  # noqa: F811
    """Batches are separate short transactions: the event loop runs between them."""
    q = quote_ident(schema)
    await conn.execute(
        f"INSERT INTO {q}.packets (kind, uid, nsp, created_at)"
        " SELECT 3, 'x', '/', now() - interval '1 hour' FROM generate_series(1, 12000)")
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.get_running_loop().create_task(ticker())
        result = await Store(pool, schema, q).prune(60.0, 600.0, batch=1000)
        task.cancel()
        assert result.packets == 12000 and result.batches >= 13
        assert ticks >= 12
    finally:
        await pool.close()


# c. NOTIFY payloads are parsed strictly ------------------------------------------------------
def test_parse_hint_is_strict() -> None:
    assert parse_hint("42") == 42 and parse_hint("0") == 0
    for bad in ("²", "٣", "", " 1", "1 ", "-1", "+1", "1" * 20, "1e3", "0x10", None, 12):
        assert parse_hint(bad) is None, bad


async def test_listener_survives_garbage_notifications(pg_dsn: str, schema: str, conn: asyncpg.Connection) -> None:  # noqa: F811
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    rows: list[Any] = []
    errors: list[BaseException] = []
    listener = LogListener(pg_dsn, quote_ident(schema), channel_name(schema), rows.append, errors.append,
                           poll_interval=60.0)  # only a NOTIFY can wake it within the test
    await listener.start()
    try:
        garbage = ["²", "٣", "¹²³", "x" * 5000, "-1", "99999999999999999999", "1.5", "\u0660"]
        for payload in garbage:
            await conn.execute("SELECT pg_notify($1, $2)", channel_name(schema), payload)
        await eventually(lambda: listener.bad_notifications == len(garbage))
        new_id = await conn.fetchval(f"SELECT {quote_ident(schema)}.emit('/', NULL, 'ev', '1'::jsonb)")
        await eventually(lambda: any(r["id"] == new_id for r in rows), timeout=5)
        assert listener.last_id == new_id
        assert not errors and not loop_errors, (errors, loop_errors)
    finally:
        await listener.close()
        loop.set_exception_handler(previous)


# d. the migration renderer substitutes once ---------------------------------------------------
def test_render_is_one_pass() -> None:
    sql = "CREATE SCHEMA @schema@; SELECT @schema_literal@;"
    evil = "a@schema@b@schema_literal@c"
    assert render(sql, evil) == (
        'CREATE SCHEMA "a@schema@b@schema_literal@c"; SELECT \'a@schema@b@schema_literal@c\';'
    )
    assert render("x @schema_literal@", "it's") == "x 'it''s'"


async def test_migrate_a_schema_named_with_placeholders(conn: asyncpg.Connection) -> None:  # noqa: F811
    name = "t_'@schema@_" + secrets.token_hex(3)  # old renderer: the quote ends the string
    try:
        await migrate(conn, name)
        q = quote_ident(name)
        assert await conn.fetchval(f"SELECT {q}.emit('/', NULL, 'ev', NULL)") >= 1
        # the functions point at that schema (not at a name cut out of the rendered SQL)
        assert await conn.fetchval(f"SELECT count(*) FROM {q}.packets") == 1
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")


# e. SQL emit refuses reserved event names ---------------------------------------------------
@pytest.mark.parametrize("event", ["connect", "connect_error", "disconnect", "disconnecting", "newListener",
                                   "removeListener"])
async def test_sql_emit_refuses_reserved_events(conn: asyncpg.Connection, schema: str, event: str) -> None:  # noqa: F811
    q = quote_ident(schema)
    with pytest.raises(asyncpg.InvalidParameterValueError, match="reserved event name"):
        await conn.fetchval(f"SELECT {q}.emit('/', NULL, $1, NULL)", event)
    with pytest.raises(asyncpg.InvalidParameterValueError, match="reserved event name"):
        await conn.fetchval(f"SELECT {q}.emit_to('/', '{{}}', '{{}}', jsonb_build_array($1::text, 1))", event)
    assert await conn.fetchval(f"SELECT count(*) FROM {q}.packets") == 0
    assert await conn.fetchval(f"SELECT {q}.emit('/', NULL, 'connected', NULL)") >= 1  # a near miss is fine


# f. client-supplied values are clipped in logs ---------------------------------------------------
def test_clip() -> None:
    assert clip("short") == "short"
    out = clip("x" * 700_000)
    assert len(out) < 260 and out.endswith("...(+699800 chars)")
    assert clip("a\nb\x00c") == "a\\nb\\x00c"
    assert clip(ValueError("boom"), 3) == "boo...(+1 chars)"


async def test_adapter_error_log_is_clipped(nodes: Any, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    a = await nodes("A")
    with caplog.at_level(logging.ERROR, logger="siopg.adapter.postgres"):
        a.factory.cluster.report(ValueError("room " + "r" * 700_000))
    lines = [r.getMessage() for r in caplog.records if r.name == "siopg.adapter.postgres"]
    assert lines and all(len(line) < 1000 for line in lines), [len(line) for line in lines]
    a.errors.clear()
