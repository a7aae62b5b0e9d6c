"""The batched publisher and the LISTEN reader against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from siopg.adapter.cluster import ClusterMessage, MessageType
from siopg.adapter.postgres import codec
from siopg.adapter.postgres.listener import LogListener
from siopg.adapter.postgres.migrations import channel_name, quote_ident
from siopg.adapter.postgres.publisher import Publisher, PublishBufferFull, PublishRowDropped


def _row(i: int, uid: str = "u") -> codec.EncodedRow:
    return codec.encode(ClusterMessage(MessageType.BROADCAST, uid, "/", {"packet": ["e", i]}, recoverable=True))


class Collector:
    def __init__(self) -> None:
        self.rows: list[tuple[int, int]] = []  # (id, i)
        self.errors: list[BaseException] = []
        self.changed = asyncio.Event()

    def on_row(self, row: object) -> None:
        msg = codec.decode(row)
        self.rows.append((row["id"], msg.data["packet"][1]))  # type: ignore[index]
        self.changed.set()

    async def wait_count(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.rows) < n:
            self.changed.clear()
            left = deadline - time.monotonic()
            assert left > 0, f"got {len(self.rows)} of {n} rows"
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


async def _setup(pg_dsn: str, schema: str, **kw: object) -> tuple[asyncpg.Pool, Publisher, LogListener, Collector]:
    got = Collector()
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    q = quote_ident(schema)
    pub = Publisher(pool, q, "u", got.errors.append, **kw)  # type: ignore[arg-type]
    listener = LogListener(pg_dsn, q, channel_name(schema), got.on_row, got.errors.append, poll_interval=0.5)
    await listener.start()
    pub.start()
    return pool, pub, listener, got


async def _teardown(pool: asyncpg.Pool, pub: Publisher, listener: LogListener) -> None:
    await pub.close()
    await listener.close()
    await pool.close()


async def test_batches_in_order(pg_dsn: str, schema: str) -> None:
    pool, pub, listener, got = await _setup(pg_dsn, schema)
    try:
        n = 5000
        start = time.perf_counter()
        for i in range(n):
            assert pub.submit(_row(i))
        assert await pub.flush(30)
        elapsed = time.perf_counter() - start
        await got.wait_count(n)
        assert [i for _, i in got.rows] == list(range(n))
        ids = [r for r, _ in got.rows]
        assert ids == sorted(ids)
        assert pub.batches < n / 10, "queued messages must share multi-row inserts"
        print(f"published {n} in {elapsed:.3f}s ({n / elapsed:.0f}/s) in {pub.batches} batches")
        assert not got.errors
    finally:
        await _teardown(pool, pub, listener)


async def test_listen_connection_killed_catches_up(pg_dsn: str, schema: str, conn: asyncpg.Connection) -> None:
    pool, pub, listener, got = await _setup(pg_dsn, schema)
    try:
        for i in range(50):
            pub.submit(_row(i))
        await got.wait_count(50)
        assert listener.conn is not None
        backend = listener.conn.get_server_pid()
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", backend)
        for i in range(50, 300):  # published while the reader is down / reconnecting
            pub.submit(_row(i))
            if i % 50 == 0:
                await asyncio.sleep(0.01)
        await got.wait_count(300)
        assert [i for _, i in got.rows] == list(range(300))
        assert listener.reconnects >= 1
        assert listener.conn is not None and listener.conn.get_server_pid() != backend
        assert got.errors == [] or all(isinstance(e, Exception) for e in got.errors)
    finally:
        await _teardown(pool, pub, listener)


async def test_garbage_notifications(pg_dsn: str, schema: str, conn: asyncpg.Connection) -> None:
    pool, pub, listener, got = await _setup(pg_dsn, schema)
    try:
        channel = channel_name(schema)
        for payload in ("garbage", "", "-1", "9" * 40, "99999999999999", "{\"id\": 1}", "\u00e9\u0000"[:1]):
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
        pub.submit(_row(1))
        await got.wait_count(1)
        await asyncio.sleep(0.2)
        assert [i for _, i in got.rows] == [1]
        assert listener.bad_notifications >= 5
        assert not listener._task.done()  # type: ignore[union-attr]
    finally:
        await _teardown(pool, pub, listener)


async def test_bad_row_does_not_stop_the_reader(pg_dsn: str, schema: str, conn: asyncpg.Connection) -> None:
    pool, pub, listener, got = await _setup(pg_dsn, schema)
    try:
        q = quote_ident(schema)
        # rows forged by hand: unknown kind, payload that is not msgpack
        await conn.execute(f"INSERT INTO {q}.packets (kind, uid, nsp, payload) VALUES (99, 'x', '/', 'zz')")
        await conn.execute(f"INSERT INTO {q}.packets (kind, uid, nsp, payload) VALUES (3, 'x', '/', '\\xc1')")
        pub.submit(_row(7))
        await got.wait_count(1)
        assert [i for _, i in got.rows] == [7]
        assert len(got.errors) == 2  # reported, not swallowed
    finally:
        await _teardown(pool, pub, listener)


async def test_retry_buffer_when_postgres_is_unreachable(pg_dsn: str, schema: str) -> None:
    """Publishes fail while the pool cannot reach Postgres: kept in order, bounded, reported."""
    errors: list[BaseException] = []
    bad_pool = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:1/none", min_size=0, max_size=1)
    pub = Publisher(bad_pool, quote_ident(schema), "u", errors.append, max_buffer=10)
    pub.start()
    try:
        accepted = [pub.submit(_row(i)) for i in range(15)]
        assert accepted == [True] * 10 + [False] * 5
        await asyncio.sleep(0.3)
        assert not pub.healthy and pub.pending == 10
        assert any(isinstance(e, PublishBufferFull) for e in errors)
        assert any(isinstance(e, OSError) for e in errors)
        # Postgres is "back": the same queue drains to the real database, in order
        good = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
        pub._pool = good
        assert await pub.flush(10)
        assert pub.healthy
        async with good.acquire() as c:
            rows = await c.fetch(f"SELECT {codec.SELECT_COLUMNS} FROM {quote_ident(schema)}.packets ORDER BY id")
        assert [codec.decode(r).data["packet"][1] for r in rows] == list(range(10))
        await good.close()
    finally:
        await pub.close(0.1)
        await bad_pool.close()


async def test_a_row_postgres_rejects_is_dropped_alone(pg_dsn: str, schema: str) -> None:
    """Bad data is not an outage: the bad row is found, dropped and reported; the rest goes out in order."""
    import asyncpg as _asyncpg

    pool, pub, listener, got = await _setup(pg_dsn, schema)
    try:
        bad = _row(99)
        bad.rooms = "not json"  # the SQL cast fails: a data error
        for row in (_row(1), _row(2), bad, _row(3)):
            pub.submit(row)
        await got.wait_count(3)
        assert [i for _, i in got.rows] == [1, 2, 3]
        # the reader may see row 3 before the publisher resumes after its COMMIT: wait for it
        assert await pub.flush(5)
        assert pub.dropped == 1 and pub.pending == 0
        assert len(got.errors) == 1 and isinstance(got.errors[0], PublishRowDropped)
        assert isinstance(got.errors[0].__cause__, _asyncpg.DataError)
    finally:
        await _teardown(pool, pub, listener)
