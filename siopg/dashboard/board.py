"""Where the servers' snapshots live, and the task that keeps this server's there.

A board answers `read()` with every server it knows of (`cluster.Entry`) and the packet
log's state. `LocalBoard`: this server alone (no cluster adapter). `PostgresBoard`: every
server's snapshot from the database, beside its heartbeat (`stats_table.StatsTable`); the
same rows whichever worker or machine reads them, so every page agrees. `ServerBoard`
chooses between them for a running server. `Publisher` samples the server every `interval`
seconds, whether or not anyone watches, and writes the snapshot to the database when there
is one: the history the charts show was kept all along.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from siopg.dashboard.cluster import Entry, readable
from siopg.dashboard.stats import Identity, Sampler, postgres_cluster, read

if TYPE_CHECKING:  # pragma: no cover
    from siopg.adapter.postgres.stats_table import StatsTable
    from siopg.server.server import Server

log = logging.getLogger("siopg.dashboard")

PUBLISH_INTERVAL = 2.0  # seconds between two snapshots of a server
#: servers whose last heartbeat is older than this are left off the page (the pruner deletes them later)
SHOWN_FOR = 60.0
#: a local reading younger than this is shared by every viewer
MIN_INTERVAL = 0.5


class Board(Protocol):
    async def read(self) -> tuple[list[Entry], dict[str, Any] | None]: ...


class LocalBoard:
    """Just this server, read live."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    async def read(self) -> tuple[list[Entry], dict[str, Any] | None]:
        doc = self.sampler.sample()  # the dashboard asks at most every MIN_INTERVAL
        return [Entry(self.sampler.identity.id, doc, None, 0.0)], None


class PostgresBoard:
    """Every server's last snapshot, from the database (`table()` None: not reachable now)."""

    def __init__(
        self, table: Callable[[], StatsTable | None], heartbeat_timeout: float = 10.0, shown_for: float = SHOWN_FOR
    ) -> None:
        self.table = table
        self.heartbeat_timeout = heartbeat_timeout  # for servers that publish no snapshot
        self.shown_for = shown_for

    async def read(self) -> tuple[list[Entry], dict[str, Any] | None]:
        table = self.table()
        if table is None:
            raise RuntimeError("the database is not connected")
        rows = await table.read(self.shown_for)
        info = await table.log_info()
        entries = []
        for row in rows:
            doc = None
            if row.stats is not None:
                try:
                    doc = json.loads(row.stats)
                except ValueError:
                    doc = None
            stats_age = row.stats_age if row.stats_age is not None else row.heartbeat_age
            entry = Entry(row.uid, doc if isinstance(doc, dict) else None, row.heartbeat_age, stats_age,
                          self.heartbeat_timeout)
            if entry.doc is not None and not readable(entry):
                log.debug("server %s published a snapshot of the wrong shape; shown without stats", row.uid)
                entry.doc = None
            entries.append(entry)
        log_doc = {
            "rows": info.rows,
            "oldest_seconds": round(info.oldest_seconds, 1),
            "pruned_through": info.pruned_through,
            "pruned_seconds": None if info.pruned_seconds is None else round(info.pruned_seconds, 1),
        }
        return entries, log_doc


class ServerBoard:
    """A running server's board: the database's when it uses the Postgres adapter, else its own."""

    def __init__(self, io: Server, sampler: Sampler) -> None:
        self.io = io
        self.local = LocalBoard(sampler)
        self.shared = PostgresBoard(self._table)

    def _table(self) -> StatsTable | None:
        cluster = postgres_cluster(self.io)
        return None if cluster is None else cluster.stats_table

    async def read(self) -> tuple[list[Entry], dict[str, Any] | None]:
        cluster = postgres_cluster(self.io)
        if cluster is None or cluster.stats_table is None:
            return await self.local.read()
        self.shared.heartbeat_timeout = cluster.options.heartbeat_timeout
        return await self.shared.read()


class Publisher:
    """Samples one server every `interval` seconds and writes its snapshot to the database."""

    def __init__(self, io: Server, sampler: Sampler, interval: float = PUBLISH_INTERVAL) -> None:
        self.io = io
        self.sampler = sampler
        self.interval = sampler.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="siopg-dashboard-stats")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.publish_once()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in sampling must not end publishing for good
                if not failing:
                    log.exception("dashboard stats sampling failed (said once until it works again)")
                failing = True
            await asyncio.sleep(self.interval)

    async def publish_once(self) -> None:
        doc = self.sampler.sample()
        cluster = postgres_cluster(self.io)
        table = None if cluster is None else cluster.stats_table
        if table is None:
            return
        doc["id"] = self.sampler.identity.id = cluster.uid
        try:
            await table.write(cluster.uid, json.dumps(doc, separators=(",", ":")))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the dashboard must never hurt serving; said once per outage
            if cluster.stats_table is None:  # the server is closing: nothing to say
                return
            if not self._failing:
                log.warning("could not publish this server's dashboard stats: %s", exc)
            self._failing = True
        else:
            self._failing = False


PUBLISHING = web.AppKey("siopg.dashboard.publishing", bool)
_PUBLISHERS: weakref.WeakKeyDictionary[Any, Publisher] = weakref.WeakKeyDictionary()


def publisher_for(io: Server, worker: str | None = None) -> Publisher:
    """The one Publisher of `io` (made on first call; `worker` names it as the logs do)."""
    found = _PUBLISHERS.get(io)
    if found is not None:
        if worker is not None:
            found.sampler.identity.worker = worker
        return found
    cluster = postgres_cluster(io)
    identity = Identity(
        id=cluster.uid if cluster is not None else secrets.token_hex(8),
        worker=worker,
        heartbeat_timeout=cluster.options.heartbeat_timeout if cluster is not None else None,
    )

    def extra() -> dict[str, Any]:
        c = postgres_cluster(io)
        return {} if c is None else {"pruned_total": int(c.pruned_packets)}

    found = _PUBLISHERS[io] = Publisher(io, Sampler(lambda now: read(io, now), identity, extra=extra))
    return found


def publish(io: Server, app: web.Application, worker: str | None = None) -> Publisher:
    """Publish `io`'s stats snapshot while `app` runs (the cluster dashboard reads them).

    `siopg serve` does it for every server; call it when you run the app yourself and want
    the server to show on other servers' dashboards (`siopg.dashboard.setup` does it too).
    """
    pub = publisher_for(io, worker)

    async def start(_: web.Application) -> None:
        pub.start()

    async def stop(_: web.Application) -> None:
        await pub.stop()

    if not app.get(PUBLISHING):
        app[PUBLISHING] = True
        app.on_startup.append(start)
        app.on_shutdown.append(stop)
    return pub

