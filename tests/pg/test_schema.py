"""Migrations, the SQL emit functions and the commit-order guarantee, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import secrets

import asyncpg
import pytest

from siopg.adapter.postgres import codec
from siopg.adapter.postgres.migrations import (
    SchemaError,
    check_schema,
    latest_version,
    load_migrations,
    main,
    migrate,
    quote_ident,
)


async def test_migrate_once_and_check(pg_dsn: str, conn: asyncpg.Connection) -> None:
    name = "siopg_m_" + secrets.token_hex(4)
    try:
        with pytest.raises(SchemaError) as err:
            await check_schema(conn, name)
        assert "siopg migrate --database-url" in str(err.value)
        assert f"--schema {name}" in str(err.value)
        # several workers starting at once: each file still runs exactly once
        conns = [await asyncpg.connect(pg_dsn) for _ in range(3)]
        try:
            results = await asyncio.gather(*(migrate(c, name) for c in conns))
        finally:
            for c in conns:
                await c.close()
        assert sorted(len(r) for r in results) == [0, 0, len(load_migrations())]
        await check_schema(conn, name)
        assert await migrate(conn, name) == []
        versions = await conn.fetch(f"SELECT version FROM {quote_ident(name)}.schema_version")
        assert sorted(r["version"] for r in versions) == [m.version for m in load_migrations()]
        assert max(r["version"] for r in versions) == latest_version()
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")


async def test_cli_main(pg_dsn: str, conn: asyncpg.Connection, capsys: pytest.CaptureFixture[str]) -> None:
    name = "siopg_cli_" + secrets.token_hex(4)
    try:
        # main() runs its own event loop: call it from a thread
        rc = await asyncio.to_thread(main, ["--database-url", pg_dsn, "--schema", name])
        assert rc == 0
        assert "applied 1" in capsys.readouterr().out
        await check_schema(conn, name)
        rc = await asyncio.to_thread(main, ["--database-url", pg_dsn, "--schema", name])
        assert rc == 0 and "up to date" in capsys.readouterr().out
        rc = await asyncio.to_thread(main, ["--database-url", "postgresql://nobody@127.0.0.1:1/x", "--schema", name])
        assert rc == 1 and "siopg migrate:" in capsys.readouterr().err
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")


async def test_hostile_schema_name(pg_dsn: str, conn: asyncpg.Connection) -> None:
    name = 'x"; DROP TABLE y; --\''
    try:
        await migrate(conn, name)
        q = quote_ident(name)
        offset = await conn.fetchval(f"SELECT {q}.emit('/', 'r', 'ev', '1'::jsonb)")
        assert await conn.fetchval(f"SELECT payload_json FROM {q}.packets WHERE id = $1", offset) == '["ev", 1]'
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")


async def test_sql_emit(schema: str, conn: asyncpg.Connection) -> None:
    q = quote_ident(schema)
    first = await conn.fetchval(f"""SELECT {q}.emit('/', 'room', 'ev', '{{"a":1}}'::jsonb)""")
    second = await conn.fetchval(f"SELECT {q}.emit('/chat', NULL, 'bare')")
    third = await conn.fetchval(
        f"""SELECT {q}.emit_to('/', ARRAY['a','b'], ARRAY['c'], '["multi", 1, [2], null]'::jsonb)"""
    )
    assert first < second < third
    rows = await conn.fetch(f"SELECT {codec.SELECT_COLUMNS} FROM {q}.packets ORDER BY id")
    messages = [codec.decode(r) for r in rows]
    assert [m.data["packet"] for m in messages] == [["ev", {"a": 1}], ["bare"], ["multi", 1, [2], None]]
    assert [m.rooms for m in messages] == [("room",), (), ("a", "b")]
    assert messages[2].except_ == ("c",)
    assert all(m.recoverable and m.uid == "emitter" for m in messages)
    assert [m.nsp for m in messages] == ["/", "/chat", "/"]
    for bad in ("'{}'::jsonb", "'[]'::jsonb", "'[1]'::jsonb", "NULL"):
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await conn.fetchval(f"SELECT {q}.emit_to('/', '{{}}', '{{}}', {bad})")


async def test_sql_emit_notifies(schema: str, pg_dsn: str, conn: asyncpg.Connection) -> None:
    got: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener("siopg#" + schema, lambda *a: got.put_nowait(a[3]))
    other = await asyncpg.connect(pg_dsn)
    try:
        offset = await other.fetchval(f"SELECT {quote_ident(schema)}.emit('/', NULL, 'x')")
    finally:
        await other.close()
    assert await asyncio.wait_for(got.get(), 5) == str(offset)


def _args(n: int, tag: str) -> tuple:
    batch = codec.RowBatch()
    from siopg.adapter.cluster import ClusterMessage, MessageType

    for i in range(n):
        batch.add(codec.encode(ClusterMessage(MessageType.BROADCAST, tag, "/", {"packet": ["e", i]}, recoverable=True)))
    return batch.args(tag)


async def test_publish_waits_for_an_uncommitted_publisher(schema: str, pg_dsn: str) -> None:
    """The commit-order trap: a row whose transaction is still open blocks later ids."""
    sql = f"SELECT {quote_ident(schema)}.publish_batch($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb[])"
    a, b = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    try:
        tx = a.transaction()
        await tx.start()
        ids_a = await a.fetchval(sql, *_args(2, "a"))
        later = asyncio.ensure_future(b.fetchval(sql, *_args(1, "b")))
        await asyncio.sleep(0.3)
        assert not later.done(), "a second publisher must wait for the open one to commit"
        await tx.commit()
        ids_b = await asyncio.wait_for(later, 5)
        assert ids_b[0] > ids_a[-1]
    finally:
        await a.close()
        await b.close()


async def test_reader_never_skips_a_late_commit(schema: str, pg_dsn: str) -> None:
    """Writers commit after random delays; a reader resuming at `id > last` sees every row."""
    q = quote_ident(schema)
    sql = f"SELECT {q}.publish_batch($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb[])"
    committed: list[int] = []
    stop = asyncio.Event()
    seen: list[int] = []

    async def writer(tag: str) -> None:
        c = await asyncpg.connect(pg_dsn)
        try:
            for _ in range(25):
                async with c.transaction():
                    ids = await c.fetchval(sql, *_args(random.randint(1, 3), tag))
                    await asyncio.sleep(random.random() * 0.01)  # commit late, out of id order
                committed.extend(ids)
        finally:
            await c.close()

    async def reader() -> None:
        c = await asyncpg.connect(pg_dsn)
        last = 0
        try:
            while True:
                rows = await c.fetch(f"SELECT id FROM {q}.packets WHERE id > $1 ORDER BY id", last)
                for r in rows:
                    seen.append(r["id"])
                    last = r["id"]
                if stop.is_set() and not rows:
                    return
                await asyncio.sleep(0.001)
        finally:
            await c.close()

    read = asyncio.ensure_future(reader())
    await asyncio.gather(*(writer(f"w{i}") for i in range(4)))
    stop.set()
    await asyncio.wait_for(read, 10)
    assert seen == sorted(committed)
    assert len(seen) == len(set(seen)) >= 100


async def test_payload_roundtrip_binary_and_big(schema: str, conn: asyncpg.Connection) -> None:
    from siopg.adapter.cluster import ClusterMessage, MessageType

    big = {"blob": bytes(range(256)) * 400, "text": "é" * 60_000, "n": [1, 2.5, None, True]}
    msg = ClusterMessage(MessageType.BROADCAST, "u", "/", {"packet": ["ev", big]}, rooms=("r'; --",), recoverable=True)
    batch = codec.RowBatch()
    batch.add(codec.encode(msg))
    q = quote_ident(schema)
    ids = await conn.fetchval(f"SELECT {q}.publish_batch($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb[])", *batch.args("u"))
    row = await conn.fetchrow(f"SELECT {codec.SELECT_COLUMNS} FROM {q}.packets WHERE id = $1", ids[0])
    back = codec.decode(row)
    assert back.data["packet"] == ["ev", big] and back.rooms == ("r'; --",)
    with pytest.raises(ValueError):
        codec.encode(ClusterMessage(MessageType.BROADCAST, "u", "/", {"packet": ["e"]}, rooms=("a\x00b",)))
    assert json.loads(batch.rooms[0]) == ["r'; --"]
