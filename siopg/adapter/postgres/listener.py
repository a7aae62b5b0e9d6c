"""The log reader: one dedicated LISTEN connection per process, reading the packet table in order.

NOTIFY payloads are only wake-up hints: the reader always fetches `id > last` from the table,
in id order. Because ids are visible in commit order (publish_batch's advisory lock), that
never skips a row, a dropped connection loses nothing (the next fetch catches up), and a
garbage or forged notification costs one cheap query and nothing else.

asyncpg notices a dead connection late, so besides its termination listener the reader polls
the table every `poll_interval` seconds with a timeout: that is both the keepalive and a safety
net. After a failure it reconnects with exponential backoff (0.1 s doubling to 5 s, jittered)
and catches up before handling anything newer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from siopg._histogram import LATENCY_BUCKETS, Histogram
from siopg._log import clip
from siopg.adapter.postgres.aio import cancel_and_wait
from siopg.adapter.postgres.codec import SELECT_COLUMNS

log = logging.getLogger("siopg.adapter.postgres")
_HINT_RE = re.compile(r"[0-9]{1,19}")


def parse_hint(payload: object) -> int | None:
    """The offset a NOTIFY announces, or None: ASCII digits only (`str.isdigit` also accepts
    '²' or Arabic-Indic digits, which `int` refuses or reads as another number), 19 at most."""
    if not isinstance(payload, str) or _HINT_RE.fullmatch(payload) is None:
        return None
    return int(payload)


class LogListener:
    def __init__(
        self,
        dsn: str,
        schema_q: str,
        channel: str,
        on_row: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
        *,
        poll_interval: float = 5.0,
        query_timeout: float = 10.0,
        fetch_size: int = 256,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        # `age`: how long ago (Postgres' clock) the row's publishing transaction began, when this
        # read began; plus the local time until its packets were handed to sockets, that is
        # the commit-to-delivery latency (one clock per part: no skew between machines)
        self._fetch_sql = (
            f"SELECT {SELECT_COLUMNS}, extract(epoch FROM statement_timestamp() - created_at)::float8 AS age"
            f" FROM {schema_q}.packets WHERE id > $1 ORDER BY id LIMIT $2"
        )
        self._head_sql = f"SELECT coalesce(max(id), 0) FROM {schema_q}.packets"
        self._on_row = on_row
        self._on_error = on_error
        self.poll_interval = poll_interval
        self.query_timeout = query_timeout
        self.fetch_size = fetch_size
        self._connect_kwargs = connect_kwargs or {}
        self._conn: asyncpg.Connection | None = None
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.last_id = 0
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.delivery_latency = Histogram(LATENCY_BUCKETS)  # seconds, commit to delivery, per row
        self.notifications = 0
        self.bad_notifications = 0

    async def start(self) -> None:
        """Connect, LISTEN, and start reading after the current head of the log."""
        await self._connect()
        assert self._conn is not None
        self.last_id = await self._conn.fetchval(self._head_sql, timeout=self.query_timeout)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="siopg-listener")

    async def _connect(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self.query_timeout,
            server_settings={"application_name": "siopg-listener"},
            **self._connect_kwargs,
        )
        try:
            await conn.add_listener(self._channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        self.connected.set()

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.notifications += 1
        hint = parse_hint(payload)
        if hint is None:
            # not ours (or forged): harmless, we only read committed rows from the table
            self.bad_notifications += 1
            if self.bad_notifications <= 10 or self.bad_notifications % 1000 == 0:
                log.warning(
                    "ignored a malformed notification on %s from backend %s: %s", channel, pid, clip(repr(payload), 80)
                )
            return
        if hint > self.last_id:
            self._wake.set()

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn:
            self.connected.clear()
            self._wake.set()

    @property
    def conn(self) -> asyncpg.Connection | None:
        return self._conn

    def wake(self) -> None:
        self._wake.set()

    async def wait_for(self, offset: int, timeout: float) -> bool:
        """Wait until rows up to `offset` were handled (True) or `timeout` passed (False)."""
        if self.last_id >= offset:
            return True
        self._wake.set()

        async def reached() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: self.last_id >= offset)

        try:
            await asyncio.wait_for(reached(), timeout)
            return True
        except TimeoutError:
            return False

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._reconnect()
                await self._catch_up()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: report, reconnect, catch up
                if self._closing:
                    return
                failures += 1
                self._on_error(exc)
                self._drop_connection()
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures - 1, 6)) * (0.5 + random.random() / 2))
                self._wake.set()

    async def _reconnect(self) -> None:
        self._drop_connection()
        await self._connect()
        self.reconnects += 1
        log.info("LISTEN connection re-established; catching up after offset %s", self.last_id)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self.connected.clear()
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _catch_up(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            began = time.monotonic()
            rows = await conn.fetch(self._fetch_sql, self.last_id, self.fetch_size, timeout=self.query_timeout)
            for row in rows:
                self.last_id = row["id"]
                try:
                    self._on_row(row)
                except Exception as exc:  # noqa: BLE001 - one bad row must not stop the log
                    self._on_error(exc)
            if rows:
                local = time.monotonic() - began
                observe = self.delivery_latency.observe
                for row in rows:
                    observe(max(0.0, (row["age"] or 0.0) + local))
                async with self._progress:
                    self._progress.notify_all()
            if len(rows) < self.fetch_size:
                return

    async def close(self) -> None:
        self._closing = True
        await cancel_and_wait([self._task])
        self._task = None
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except Exception:  # noqa: BLE001
                conn.terminate()
