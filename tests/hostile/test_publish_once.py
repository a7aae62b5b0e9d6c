"""Fault 3: a publish whose COMMIT reply is lost is written once, never twice.

A proxy between one server (or an Emitter) and the shared Postgres lets the query through,
swallows Postgres's reply, waits until the rows are visible from another connection (so the
transaction surely committed) and cuts the connection. The sender must retry without
duplicating: every client gets each event once, and the table holds each row once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from pg.conftest import conn, js, node_driver, schema  # noqa: F401  (fixtures)
from pg.harness import Node, eventually
from pg.test_blips import _upstream, _via, connect, payloads

import siopg
from siopg.adapter.postgres import EmitNotConfirmed
from siopg.adapter.postgres.migrations import quote_ident

from .publish_proxy import ReplyLosingProxy


async def _rows(conn: asyncpg.Connection, schema: str, uid: str) -> list[int]:  # noqa: F811
    q = quote_ident(schema)
    return [r["id"] for r in await conn.fetch(f"SELECT id FROM {q}.packets WHERE uid = $1 AND kind = 3 ORDER BY id", uid)]


async def test_server_publish_with_lost_commit_reply_is_written_once(
    pg_dsn: str, schema: str, js: Any, conn: asyncpg.Connection  # noqa: F811
) -> None:
    proxy = await ReplyLosingProxy(_upstream(pg_dsn)).start()
    a = await Node(_via(pg_dsn, proxy.port), schema, "A").start()
    b = await Node(pg_dsn, schema, "B").start()
    try:
        ca, cb = await connect(js, a, "ca"), await connect(js, b, "cb")
        a.io.emit("seq", "A", 0)
        await ca.wait_for("seq")
        await cb.wait_for("seq")
        proxy.hold = True
        for i in range(1, 11):  # one batch: queued before the publisher runs
            a.io.emit("seq", "A", i)
        # the batch committed (visible from another connection), its reply is held
        await eventually(lambda: _count_is(conn, schema, a.factory.uid, 11), timeout=10)
        assert a.factory.cluster.publisher.pending == 10, "the publisher still waits for its reply"
        proxy.hold = False
        proxy.cut_all()  # the reply is lost: the publisher cannot know the batch landed
        for i in range(11, 21):
            a.io.emit("seq", "A", i)
        assert await a.factory.cluster.publisher.flush(15)
        for c in (ca, cb):
            await c.wait_for("seq", 21, timeout=15)
        # a duplicate would have an offset before event 11's: it would have arrived by now
        ids = await _rows(conn, schema, a.factory.uid)
        assert len(ids) == 21, f"{len(ids) - 21} rows written twice"
        for c in (ca, cb):
            assert payloads(c, "A") == list(range(21)), c.name
            offsets = [int(args[-1]) for args in c.received("seq")]
            assert offsets == ids, "each event once, with its row's offset, in order"
        assert a.factory.cluster.publisher.retries >= 1
        assert a.errors, "the lost connection was reported"
        a.errors.clear()
    finally:
        await a.stop()
        await b.stop()
        await proxy.close()
    assert not b.errors


async def _count_is(conn: asyncpg.Connection, schema: str, uid: str, n: int) -> bool:  # noqa: F811
    return len(await _rows(conn, schema, uid)) == n


@pytest.mark.parametrize("kept_connection", [False, True])
async def test_emitter_with_lost_commit_reply_lands_once_and_says_so(
    pg_dsn: str, schema: str, conn: asyncpg.Connection, kept_connection: bool  # noqa: F811
) -> None:
    proxy = await ReplyLosingProxy(_upstream(pg_dsn)).start()
    emitter = siopg.Emitter(_via(pg_dsn, proxy.port), schema=schema, timeout=5.0)
    try:
        if kept_connection:
            await emitter.connect()
        proxy.hold_on = b"publish_batch"  # lose the publish's reply
        task = asyncio.get_running_loop().create_task(emitter.to("r").emit("ev", {"n": 1}))
        await eventually(lambda: _count_is(conn, schema, "emitter", 1), timeout=10)
        assert not task.done()
        proxy.hold, proxy.hold_on = False, None
        proxy.cut_all()
        offset = await asyncio.wait_for(task, 15)  # confirmed, not an error
        assert await _rows(conn, schema, "emitter") == [offset], "written once, and the caller got its offset"
        # the emitter goes on working (a kept connection is replaced)
        second = await emitter.emit("ev", {"n": 2})
        assert await _rows(conn, schema, "emitter") == [offset, second]
    finally:
        await emitter.close()
        await proxy.close()


async def test_emitter_that_cannot_confirm_raises_and_never_duplicates(
    pg_dsn: str, schema: str, conn: asyncpg.Connection  # noqa: F811
) -> None:
    """Every reply lost, every retry too: a clear error after the attempts, and the packet
    that did commit is in the log once."""
    proxy = await ReplyLosingProxy(_upstream(pg_dsn)).start()
    emitter = siopg.Emitter(_via(pg_dsn, proxy.port), schema=schema, attempts=3, timeout=0.5)
    try:
        proxy.hold_on = b"publish_batch"
        with pytest.raises(EmitNotConfirmed, match="once or not at all") as err:
            await emitter.emit("ev", 1)
        assert err.value.key is not None
        ids = await _rows(conn, schema, "emitter")
        assert len(ids) == 1
        q = quote_ident(schema)
        assert await conn.fetchval(f"SELECT batch_key FROM {q}.packets WHERE id = $1", ids[0]) == err.value.key
    finally:
        await proxy.close()
    # nothing listens there: refused at once each attempt, then the same clear error
    with pytest.raises(EmitNotConfirmed):
        await siopg.Emitter("postgresql://postgres@127.0.0.1:1/none", schema=schema, attempts=2).emit("ev")


async def test_a_retry_while_the_first_attempt_is_still_running_waits_and_writes_nothing(
    pg_dsn: str, schema: str, conn: asyncpg.Connection  # noqa: F811
) -> None:
    """A partition: the first attempt's backend still runs (holds the ordering lock) when the
    retry arrives on a new connection. The retry waits for it and returns its ids."""
    import uuid

    from siopg.adapter.cluster import ClusterMessage, MessageType
    from siopg.adapter.postgres import codec

    q = quote_ident(schema)
    sql = f"SELECT {q}.publish_batch_once($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb[])"
    batch = codec.RowBatch()
    for i in range(3):
        batch.add(codec.encode(ClusterMessage(MessageType.BROADCAST, "u", "/", {"packet": ["e", i]}, recoverable=True)))
    key = uuid.uuid4()
    first = await asyncpg.connect(pg_dsn)
    try:
        tx = first.transaction()
        await tx.start()
        ids = await first.fetchval(sql, key, *batch.args("u"))
        retry = asyncio.get_running_loop().create_task(conn.fetchval(sql, key, *batch.args("u")))
        await asyncio.sleep(0.2)
        assert not retry.done(), "the retry waits for the ordering lock"
        await tx.commit()
        assert await asyncio.wait_for(retry, 10) == ids
    finally:
        await first.close()
    assert await _rows(conn, schema, "u") == ids and len(ids) == 3
    # and a first attempt that rolled back is written by the retry
    key2 = uuid.uuid4()
    tx = conn.transaction()
    await tx.start()
    await conn.fetchval(sql, key2, *batch.args("u"))
    await tx.rollback()
    again = await conn.fetchval(sql, key2, *batch.args("u"))
    assert len(again) == 3 and min(again) > max(ids)
    assert await _rows(conn, schema, "u") == [*ids, *again]
