"""Batched, ordered publishing to the packet table.

At most one `publish_batch` call is in flight per process; whatever is queued meanwhile goes
into the next multi-row insert, so NOTIFY's global commit lock is paid per batch, not per
packet. A failed batch stays at the head of the queue and is retried with backoff, so
messages keep their order across a Postgres outage.

The queue is bounded (`max_buffer` messages). While it is full, new messages are refused:
`submit` returns False and the error handler is told (`PublishBufferFull`); the messages
already queued are kept and sent in order once Postgres is back. So an outage longer than
the buffer loses the messages sent after it filled up, never older ones, and never silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from typing import Callable

import asyncpg

from siopg.adapter.postgres.aio import cancel_and_wait
from siopg.adapter.postgres.codec import EncodedRow, RowBatch

log = logging.getLogger("siopg.adapter.postgres")


class PublishBufferFull(RuntimeError):
    """Postgres has been unreachable long enough that the retry buffer filled up."""


class Publisher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        schema_q: str,
        uid: str,
        on_error: Callable[[BaseException], None],
        *,
        max_batch: int = 2000,
        max_batch_bytes: int = 8 * 1024 * 1024,
        max_buffer: int = 100_000,
        statement_timeout: float = 10.0,
        on_unhealthy: Callable[[], None] | None = None,
    ) -> None:
        self._on_unhealthy = on_unhealthy
        self._pool = pool
        self._sql = f"SELECT {schema_q}.publish_batch($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb[])"
        self._uid = uid
        self._on_error = on_error
        self._queue: deque[EncodedRow] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._full_reported = False
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.max_buffer = max_buffer
        self.timeout = statement_timeout
        self.healthy = True  # False from a failed attempt until the next success
        self.batches = 0
        self.published = 0
        self.dropped = 0
        self._isolate = 0  # after a data error: send the next rows one by one to find the bad one

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="siopg-publisher")

    def submit(self, row: EncodedRow) -> bool:
        if len(self._queue) >= self.max_buffer:
            if not self._full_reported:
                self._full_reported = True
                self._on_error(PublishBufferFull(
                    f"{len(self._queue)} messages wait for Postgres; newer ones are dropped until it is back"
                ))
            return False
        self._queue.append(row)
        self._idle.clear()
        self._wake.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is committed (False on timeout)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self, timeout: float = 2.0) -> None:
        await self.flush(timeout)
        await cancel_and_wait([self._task])
        self._task = None
        if self._queue:
            self._on_error(PublishBufferFull(f"closed with {len(self._queue)} unpublished messages"))
            self._queue.clear()

    def _take(self) -> tuple[RowBatch, int]:
        batch = RowBatch()
        size = 0
        limit = 1 if self._isolate else self.max_batch
        for row in self._queue:
            if len(batch) >= limit or (len(batch) and size + row.size > self.max_batch_bytes):
                break
            batch.add(row)
            size += row.size
        return batch, len(batch)

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, n = self._take()
            try:
                await self._pool.fetchval(self._sql, *batch.args(self._uid), timeout=self.timeout)
            except asyncio.CancelledError:
                raise
            except asyncpg.DataError as exc:
                # bad data (not an outage): never retry it forever, find and drop the bad row
                if n == 1:
                    self._queue.popleft()
                    self.dropped += 1
                    self._isolate = max(0, self._isolate - 1)
                    self._on_error(exc)
                else:
                    self._isolate = n
                continue
            except Exception as exc:  # noqa: BLE001 - any failure: report, back off, retry in order
                failures += 1
                was_healthy, self.healthy = self.healthy, False
                self._on_error(exc)
                if was_healthy and self._on_unhealthy is not None:
                    self._on_unhealthy()
                delay = min(5.0, 0.05 * 2 ** min(failures, 7)) * (0.5 + random.random() / 2)
                await asyncio.sleep(delay)
                continue
            for _ in range(n):
                self._queue.popleft()
            if self._isolate:
                self._isolate -= 1
            failures = 0
            self.healthy = True
            self._full_reported = False
            self.batches += 1
            self.published += n
