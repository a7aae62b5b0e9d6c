"""Batched, ordered, idempotent publishing to the packet table.

At most one `publish_batch_once` call is in flight per process; whatever is queued meanwhile
goes into the next multi-row insert, so NOTIFY's global commit lock is paid per batch, not
per packet.

Failures are of two kinds:

* **Unknown outcome** (connection lost, timeout, Postgres restarting: anything but the two
  classes below). The batch may or may not have committed, so the *same* batch (same rows,
  same random key) is retried with backoff until it goes through; the SQL function finds the
  key of a batch that committed and returns its ids instead of inserting it again. So a lost
  reply never duplicates a packet, and messages keep their order across an outage.
* **Refused data** (SQLSTATE class 22 "data exception" or 54 "program limit exceeded", e.g. a
  value over an index's size limit, or input asyncpg cannot encode). The statement surely
  rolled back. The batch is bisected to isolate the bad row(s), which are dropped and reported
  (`dropped`, `PublishRowDropped`); the others are published in order. One bad row never
  blocks the queue behind it.

The queue is bounded by count (`max_buffer` messages) and by size (`max_buffer_bytes`). Past
either bound, new messages are refused: `submit` returns False, `refused` counts them and the
error handler is told (`PublishBufferFull`, at once and then at most once a second with the
count); the messages already queued are kept and sent in order once Postgres is back. So an
outage longer than the buffer loses the messages sent after it filled up, never older ones,
and never silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import deque
from collections.abc import Callable

import asyncpg

from siopg._histogram import BATCH_SIZE_BUCKETS, Histogram
from siopg.adapter.postgres.aio import cancel_and_wait
from siopg.adapter.postgres.codec import EncodedRow, RowBatch
from siopg.errors import SiopgError

log = logging.getLogger("siopg.adapter.postgres")

# SQLSTATE classes that mean "this data can never be stored", not "Postgres is away".
PERMANENT_SQLSTATE_CLASSES = frozenset(("22", "54"))


class PublishBufferFull(RuntimeError, SiopgError):
    """Postgres has been unreachable long enough that the retry buffer filled up."""


class PublishRowDropped(RuntimeError, SiopgError):
    """Postgres refused one message for good (bad data, size limit): it was dropped alone."""


def is_refused_data(exc: BaseException) -> bool:
    """True when `exc` says the statement's data can never be stored (retrying cannot help).

    Server side: SQLSTATE class 22 or 54. Client side: asyncpg's "invalid input for query
    argument" (an InterfaceError that is also a ValueError; nothing was sent)."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", ""))[:2] in PERMANENT_SQLSTATE_CLASSES
    return isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)


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
        max_buffer_bytes: int = 64 * 1024 * 1024,
        statement_timeout: float = 10.0,
    ) -> None:
        self._pool = pool
        self._sql = f"SELECT {schema_q}.publish_batch_once($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb[])"
        self._uid = uid
        self._on_error = on_error
        self._queue: deque[EncodedRow] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        # the batch being sent: kept (same rows, same key) until its outcome is known
        self._inflight: tuple[uuid.UUID, RowBatch, int] | None = None
        # bisection after refused data: the first `_suspect` rows hold a bad one; send at most `_limit`
        self._suspect = 0
        self._limit = max_batch
        self._refused_unreported = 0
        self._last_full_report = float("-inf")
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.max_buffer = max_buffer
        self.max_buffer_bytes = max_buffer_bytes
        self.timeout = statement_timeout
        self.healthy = True  # False from a failed attempt until the next success
        self.batches = 0
        self.published = 0
        self.retries = 0  # attempts repeated after an unknown outcome
        self.dropped = 0  # messages Postgres refused for good (dropped alone)
        self.refused = 0  # messages refused because the buffer was full
        self.batch_sizes = Histogram(BATCH_SIZE_BUCKETS)  # rows per committed batch

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="siopg-publisher")

    def submit(self, row: EncodedRow) -> bool:
        """Queue `row`; False (and reported) when the buffer is full: the row is not sent."""
        size = row.size
        if len(self._queue) >= self.max_buffer or self._bytes + size > self.max_buffer_bytes:
            self.refused += 1
            self._refused_unreported += 1
            self._report_full()
            return False
        self._queue.append(row)
        self._bytes += size
        self._idle.clear()
        self._wake.set()
        return True

    def _report_full(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last_full_report < 1.0:
            return  # loud but not a flood: at most one report a second, with the count
        self._last_full_report = now
        count, self._refused_unreported = self._refused_unreported, 0
        self._on_error(PublishBufferFull(
            f"publish buffer full ({len(self._queue)} messages, {self._bytes} bytes wait for Postgres; "
            f"bounds {self.max_buffer} messages / {self.max_buffer_bytes} bytes): "
            f"{count} new message(s) refused, {self.refused} since start"
        ))

    @property
    def pending(self) -> int:
        """Messages waiting for Postgres (the buffer's depth)."""
        return len(self._queue)

    @property
    def pending_bytes(self) -> int:
        """Bytes waiting for Postgres (as counted against `max_buffer_bytes`)."""
        return self._bytes

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is committed (False on timeout)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self, timeout: float = 2.0) -> None:
        await self.flush(timeout)
        await cancel_and_wait([self._task])
        self._task = None
        if self._queue:
            self._on_error(PublishBufferFull(f"closed with {len(self._queue)} unpublished messages"))
            self._queue.clear()
            self._bytes = 0
        self._inflight = None

    def _take(self) -> tuple[uuid.UUID, RowBatch, int]:
        batch = RowBatch()
        size = 0
        limit = self._limit if self._suspect else self.max_batch
        for row in self._queue:
            if len(batch) >= limit or (len(batch) and size + row.size > self.max_batch_bytes):
                break
            batch.add(row)
            size += row.size
        return uuid.uuid4(), batch, len(batch)

    def _pop(self, n: int) -> None:
        for _ in range(n):
            self._bytes -= self._queue.popleft().size

    async def _run(self) -> None:
        failures = 0
        while True:
            if self._inflight is None:
                if not self._queue:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._inflight = self._take()
            key, batch, n = self._inflight
            try:
                await self._pool.fetchval(self._sql, key, *batch.args(self._uid), timeout=self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below; never ends the loop
                if is_refused_data(exc):
                    self._inflight = None  # rolled back for sure: a new batch (new key) next
                    self._refused(exc, n)
                    continue
                # unknown outcome: report, back off, send the same batch (same key) again
                failures += 1
                self.retries += 1
                self.healthy = False
                self._on_error(exc)
                delay = min(5.0, 0.05 * 2 ** min(failures, 7)) * (0.5 + random.random() / 2)
                await asyncio.sleep(delay)
                continue
            self._inflight = None
            self._pop(n)
            if self._suspect:
                self._suspect = max(0, self._suspect - n)
                self._limit = self._suspect or self.max_batch  # the bad row is in what is left
            failures = 0
            self.healthy = True
            self.batches += 1
            self.published += n
            self.batch_sizes.observe(n)

    def _refused(self, exc: BaseException, n: int) -> None:
        """Postgres refused the batch's data: bisect it down to the bad row, drop that one."""
        if n > 1:
            self._suspect = n
            self._limit = max(1, n // 2)
            return
        row = self._queue[0]
        self._pop(1)
        self._suspect = 0
        self._limit = self.max_batch
        self.dropped += 1
        error = PublishRowDropped(
            f"Postgres refused a message (type {row.kind}, namespace {row.nsp[:64]!r}"
            f"{'...' if len(row.nsp) > 64 else ''}, {row.size} bytes); dropped, the others go on: "
            f"{type(exc).__name__}: {str(exc)[:200]}"
        )
        error.__cause__ = exc
        self._on_error(error)
