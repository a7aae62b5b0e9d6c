"""Servers' stats snapshots in the database: written beside each heartbeat, read by any dashboard.

Each server rewrites the `stats` column of its liveness row in `<schema>.nodes` (namespace
"", see store.NODE_ROW) with a small JSON document of aggregates (migration 0006). Readers
get every server seen recently in one query, with the ages measured by Postgres' clock (so
machines with skewed clocks still agree), plus the packet log's size and pruning progress.
The adapter does not know what a snapshot holds: siopg.dashboard builds and reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from siopg.adapter.postgres.store import NODE_ROW


@dataclass(slots=True)
class ServerRow:
    """One server as the database saw it: ages in seconds, `stats` None if it published none."""

    uid: str
    heartbeat_age: float
    stats_age: float | None
    stats: str | None  # the JSON text as written


@dataclass(slots=True)
class LogInfo:
    """The packet log now: id span of its rows, age of the oldest, and how far pruning went."""

    rows: int
    oldest_seconds: float
    pruned_through: int
    pruned_seconds: float | None  # age of the newest packet pruned so far (None: none yet)


class StatsTable:
    def __init__(self, pool: asyncpg.Pool, schema_q: str) -> None:
        self.pool = pool
        q = schema_q
        self._write_sql = f"UPDATE {q}.nodes SET stats = $2::jsonb, stats_at = now() WHERE uid = $1 AND nsp = $3"
        self._read_sql = (
            "SELECT uid, extract(epoch FROM now() - last_seen)::float8 AS heartbeat_age,"
            " extract(epoch FROM now() - stats_at)::float8 AS stats_age, stats::text AS stats"
            f" FROM {q}.nodes WHERE nsp = $1 AND last_seen > now() - make_interval(secs => $2) ORDER BY uid"
        )
        self._log_sql = (
            f"SELECT (SELECT max(id) - min(id) + 1 FROM {q}.packets) AS span,"
            f" extract(epoch FROM now() - (SELECT created_at FROM {q}.packets ORDER BY id LIMIT 1))::float8 AS age,"
            " l.pruned_through, extract(epoch FROM now() - l.pruned_at)::float8 AS pruned_age"
            f" FROM {q}.log_state l"
        )

    async def write(self, uid: str, stats_json: str) -> None:
        """Replace `uid`'s snapshot (a no-op until its first heartbeat made the row)."""
        await self.pool.execute(self._write_sql, uid, stats_json, NODE_ROW)

    async def read(self, seen_within: float) -> list[ServerRow]:
        """Every server whose heartbeat is at most `seen_within` seconds old."""
        rows = await self.pool.fetch(self._read_sql, NODE_ROW, seen_within)
        return [ServerRow(r["uid"], float(r["heartbeat_age"]), r["stats_age"], r["stats"]) for r in rows]

    async def log_info(self) -> LogInfo:
        """Size and pruning state of the packet log (index probes and a one-row table)."""
        row: Any = await self.pool.fetchrow(self._log_sql)
        return LogInfo(int(row["span"] or 0), float(row["age"] or 0.0), int(row["pruned_through"] or 0),
                       row["pruned_age"])
