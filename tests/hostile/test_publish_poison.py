"""Finding 2 (queue part): a row Postgres refuses for good never blocks the rows behind it.

A broadcast in a namespace whose name exceeds the recovery index's size limit (SQLSTATE
54000) or with a room Postgres cannot store (class 22) used to be retried forever at the head
of the publish queue: nothing from that server reached the others again. The publisher now
bisects the batch, drops the bad row(s) alone (reported, counted) and publishes the rest in
order.
"""

from __future__ import annotations

import secrets

import asyncpg
import pytest
from pg.conftest import conn, schema  # noqa: F401  (fixtures)
from pg.test_log import _row, _setup, _teardown

from siopg.adapter.cluster import MessageType
from siopg.adapter.postgres import codec
from siopg.adapter.postgres.migrations import quote_ident
from siopg.adapter.postgres.publisher import PublishRowDropped


def _poison(kind: str) -> codec.EncodedRow:
    """A row the SQL function refuses (built by hand: upper layers refuse such names earlier)."""
    if kind == "long namespace":  # over the btree limit of packets_recovery_idx (54000)
        return codec.EncodedRow(int(MessageType.BROADCAST), "/" + secrets.token_urlsafe(4500), "[]", "[]",
                                True, None, codec.pack({"packet": ["e", -1]}))
    # a lone surrogate: valid JSON text, but not storable as jsonb (class 22)
    return codec.EncodedRow(int(MessageType.BROADCAST), "/", '["\\ud800"]', "[]", True, None,
                            codec.pack({"packet": ["e", -1]}))


async def _refused_alone(conn: asyncpg.Connection, schema: str, row: codec.EncodedRow) -> bool:  # noqa: F811
    batch = codec.RowBatch()
    batch.add(row)
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.fetchval(f"SELECT {quote_ident(schema)}.publish_batch($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb[])",
                            *batch.args("probe"))
        return False
    except asyncpg.PostgresError:
        return True
    finally:
        await tx.rollback()


@pytest.mark.parametrize("kind", ["long namespace", "bad room"])
async def test_a_refused_row_does_not_block_the_queue(
    pg_dsn: str, schema: str, conn: asyncpg.Connection, kind: str  # noqa: F811
) -> None:
    if not await _refused_alone(conn, schema, _poison(kind)):
        pytest.skip(f"this schema stores a {kind!r} row: nothing to refuse")
    pool, pub, listener, got = await _setup(pg_dsn, schema)
    try:
        for i in range(5):
            pub.submit(_row(i))
        pub.submit(_poison(kind))
        for i in range(5, 10):
            pub.submit(_row(i))
        await got.wait_count(10)
        assert [i for _, i in got.rows] == list(range(10))
        assert await pub.flush(5)
        assert pub.dropped == 1 and pub.pending == 0 and pub.pending_bytes == 0
        assert len(got.errors) == 1 and isinstance(got.errors[0], PublishRowDropped)
        assert len(str(got.errors[0])) < 600, "the report does not carry the whole value"
        # and the server goes on publishing normally
        pub.submit(_row(10))
        await got.wait_count(11)
    finally:
        await _teardown(pool, pub, listener)


async def test_bisection_finds_every_bad_row_and_keeps_the_order(pg_dsn: str, schema: str) -> None:  # noqa: F811
    pool, pub, listener, got = await _setup(pg_dsn, schema)
    try:
        bad_at = {0, 1, 137, 138, 500, 999}
        expected = []
        for i in range(1000):
            if i in bad_at:
                pub.submit(_poison("bad room"))
            else:
                pub.submit(_row(i))
                expected.append(i)
        await got.wait_count(len(expected), timeout=30)
        assert await pub.flush(10)
        assert [i for _, i in got.rows] == expected
        assert pub.dropped == len(bad_at)
        assert all(isinstance(e, PublishRowDropped) for e in got.errors) and len(got.errors) == len(bad_at)
        assert pub.batches < 200, "bisection, not one row at a time"
    finally:
        await _teardown(pool, pub, listener)


def test_only_data_errors_drop_rows() -> None:
    """Bisect-and-drop is for data Postgres can never store; anything else is an outage
    (retried with the same key, never dropped)."""
    from siopg.adapter.postgres.publisher import is_refused_data
    from siopg.emitter import _unknown_outcome

    exc = asyncpg.exceptions
    refused = [exc.ProgramLimitExceededError("index row size"), exc.InvalidTextRepresentationError("json"),
               exc.CharacterNotInRepertoireError("x"), exc.UntranslatableCharacterError("x"),
               exc.StringDataRightTruncationError("x")]
    outage = [exc.ConnectionDoesNotExistError("closed"), exc.AdminShutdownError("bye"),
              exc.CannotConnectNowError("starting"), exc.QueryCanceledError("timeout"), OSError("reset"),
              TimeoutError(), exc.OutOfMemoryError("oom"), exc.UndefinedFunctionError("no function")]
    assert all(is_refused_data(e) for e in refused)
    assert not any(is_refused_data(e) for e in outage)
    assert all(_unknown_outcome(e) for e in outage[:-1])
    assert not any(_unknown_outcome(e) for e in refused)
