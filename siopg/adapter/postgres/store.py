"""SQL for sessions, nodes and pruning (the parts of the schema beside the log)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import asyncpg

from siopg.adapter.postgres.codec import SELECT_COLUMNS

_PRUNE_LOCK = 1936289641
NODE_ROW = ""  # the nodes row that says a server is alive, whatever its namespaces
# a value Postgres refuses (too long to index, NUL, bad encoding; ValueError: client-side checks)
_ROW_ERRORS = (asyncpg.DataError, asyncpg.ProgramLimitExceededError, ValueError)

# Errors that say "the database cannot be reached now", not "this value is wrong": the work
# is kept and retried (session writes) or waited for (restores).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes TimeoutError and ConnectionError
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, cannot connect now, canceled
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.InterfaceError,  # connection closed / pool closing
)


def is_transient(exc: BaseException) -> bool:
    """True when `exc` means Postgres is (maybe briefly) unreachable rather than a bad value."""
    if isinstance(exc, (ValueError, TypeError)):  # asyncpg's client-side DataError is an InterfaceError too
        return False
    return isinstance(exc, TRANSIENT_ERRORS)


@dataclass(slots=True)
class PruneResult:
    packets: int = 0
    sessions: int = 0
    nodes: int = 0
    skipped: bool = False
    batches: int = 0


@dataclass(slots=True)
class LogStats:
    """The packet log's size as seen after a pruning pass (for metrics)."""

    rows: int = 0  # id span of the rows left: an upper bound of the row count, O(1) to read
    oldest_age: float = 0.0  # seconds since the oldest row left was written


class Store:
    def __init__(self, pool: asyncpg.Pool, schema: str, schema_q: str) -> None:
        self.pool = pool
        self.schema = schema
        q = schema_q
        self.q = q
        upsert = (
            " ON CONFLICT (pid) DO UPDATE SET sid = excluded.sid, nsp = excluded.nsp, rooms = excluded.rooms,"
            " data = excluded.data, \"offset\" = excluded.\"offset\", joined = excluded.joined,"
            " owner = excluded.owner, expires_at = excluded.expires_at"
            # never overwrite the live session another server now holds (a stale socket
            # noticing its disconnect late, after the client recovered elsewhere)
            " WHERE sessions.expires_at IS NOT NULL OR sessions.owner IS NOT DISTINCT FROM excluded.owner"
        )
        self._persist_sql = (
            f"INSERT INTO {q}.sessions (pid, sid, nsp, rooms, data, \"offset\", joined, owner, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, now() + make_interval(secs => $9))" + upsert
        )
        self._snapshot_sql = (
            f"INSERT INTO {q}.sessions (pid, sid, nsp, rooms, data, \"offset\", joined, owner, expires_at)"
            " SELECT t.pid, t.sid, t.nsp, ARRAY(SELECT jsonb_array_elements_text(t.rooms::jsonb)), t.data,"
            " t.off, t.joined::jsonb, $8, NULL FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
            " $5::bytea[], $6::bigint[], $7::text[]) AS t(pid, sid, nsp, rooms, data, off, joined)" + upsert
        )
        self._forget_sql = (
            f"DELETE FROM {q}.sessions WHERE pid = ANY($1::text[]) AND expires_at IS NULL AND owner = $2"
        )
        # A session row, read (and locked) by a restoring server. `live`: its socket was
        # connected when last written; `owner_alive`: that server heartbeats; `valid`: still
        # recoverable (persisted and not expired, or live and its owner seen within
        # heartbeat_timeout + window: the client lost its connection at or after that).
        self._read_session_sql = (
            f"SELECT s.sid, s.rooms, s.data, s.\"offset\", s.joined, s.owner, s.expires_at IS NULL AS live,"
            f" coalesce((SELECT max(n.last_seen) FROM {q}.nodes n WHERE n.uid = s.owner)"
            "   > now() - make_interval(secs => $3), false) AS owner_alive,"
            " coalesce(s.expires_at > now() OR (s.expires_at IS NULL AND"
            f"  (SELECT max(n.last_seen) FROM {q}.nodes n WHERE n.uid = s.owner)"
            "   > now() - make_interval(secs => $3 + $4)), false) AS valid,"
            # Packets up to pruned_through may be gone. The client can only have missed those
            # written after its transport was last known alive: its disconnect (persisted:
            # expires_at - window; live row of a dead server: the owner's last heartbeat)
            # minus $5, how long a dead transport can go unnoticed. `pruned_unsafe`: the
            # newest pruned packet is that recent (or unknown), so a gap cannot be ruled out.
            f" l.pruned_through, coalesce(l.pruned_at >= (CASE WHEN s.expires_at IS NOT NULL"
            "  THEN s.expires_at - make_interval(secs => $4)"
            f"  ELSE (SELECT max(n.last_seen) FROM {q}.nodes n WHERE n.uid = s.owner) END)"
            "  - make_interval(secs => $5), l.pruned_through > 0) AS pruned_unsafe"
            f" FROM {q}.sessions s, {q}.log_state l WHERE s.pid = $1 AND s.nsp = $2 FOR UPDATE OF s"
        )
        # Handing the session to its new owner is this one UPDATE, committed with the replay
        # read: from then on the row is the new owner's live session (no gap for a crash).
        self._claim_sql = f"UPDATE {q}.sessions SET owner = $2, expires_at = NULL WHERE pid = $1"
        self._pruned_sql = f"SELECT pruned_through FROM {q}.log_state"
        self._offset_ok_sql = f"SELECT EXISTS (SELECT 1 FROM {q}.packets WHERE id = $1 AND nsp = $2 AND recoverable)"
        self._missed_sql = (
            f"SELECT {SELECT_COLUMNS} FROM {q}.packets"
            " WHERE nsp = $1 AND recoverable AND id > $2 AND id <= $3"
            " AND NOT (except_rooms && $4::text[])"
            # to everyone: any id above the base (the base is never below the session start);
            # to rooms: only above the join offset of a target room the session is in
            " AND (cardinality(rooms) = 0 OR (rooms && $4::text[] AND EXISTS ("
            "  SELECT 1 FROM unnest($4::text[], $5::bigint[]) AS j(room, since)"
            f"  WHERE j.room = ANY({q}.packets.rooms) AND {q}.packets.id > j.since)))"
            " ORDER BY id"
        )
        self._heartbeat_sql = (
            f"INSERT INTO {q}.nodes (uid, nsp) SELECT $1, unnest($2::text[])"
            " ON CONFLICT (uid, md5(nsp)) DO UPDATE SET last_seen = now()"
        )
        self._alive_sql = (
            f"SELECT uid, nsp FROM {q}.nodes WHERE last_seen > now() - make_interval(secs => $1)"
        )
        self._count_sql = (
            f"SELECT count(DISTINCT uid) FROM {q}.nodes"
            " WHERE nsp = $1 AND last_seen > now() - make_interval(secs => $2)"
        )
        self._leave_sql = f"DELETE FROM {q}.nodes WHERE uid = $1 AND nsp = ANY($2::text[])"

    # sessions ----------------------------------------------------------------------------
    async def persist(self, pid: str, sid: str, nsp: str, rooms: list[str], data: bytes, offset: int | None,
                      joined: str | None, owner: str, ttl: float) -> None:
        await self.pool.execute(self._persist_sql, pid, sid, nsp, rooms, data, offset, joined, owner, ttl)

    async def snapshot(self, rows: list[tuple[str, str, str, str, bytes, int | None, str | None]],
                       forget: list[str], owner: str) -> None:
        """Write live sessions (pid, sid, nsp, rooms as JSON, data, offset, joined as JSON);
        drop `forget` ones.

        One transaction, forget first: a pid both forgotten and re-snapshotted (a socket that
        left and was restored here) ends up present.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            if forget:
                await conn.execute(self._forget_sql, forget, owner)
            if rows:
                cols = list(zip(*rows, strict=True))
                await conn.execute(self._snapshot_sql, *cols, owner)

    async def read_session(self, conn: asyncpg.Connection, pid: str, nsp: str, heartbeat_timeout: float,
                           window: float, dead_transport: float) -> Any:
        """The session row with its `live`, `owner_alive` and `valid` flags, the log's
        `pruned_through` and `pruned_unsafe` (see `_read_session_sql`), locked (or None)."""
        return await conn.fetchrow(self._read_session_sql, pid, nsp, heartbeat_timeout, window, dead_transport)

    async def claim(self, conn: asyncpg.Connection, pid: str, owner: str) -> None:
        """Make the session `owner`'s live one (same transaction as the replay read)."""
        await conn.execute(self._claim_sql, pid, owner)

    async def pruned_through(self, conn: asyncpg.Connection) -> int:
        return await conn.fetchval(self._pruned_sql)

    async def offset_exists(self, conn: asyncpg.Connection, offset: int, nsp: str) -> bool:
        return await conn.fetchval(self._offset_ok_sql, offset, nsp)

    async def missed(self, conn: Any, nsp: str, after: int, upto: int, rooms: list[str],
                     since: list[int]) -> list[Any]:
        """Recoverable packets in (after, upto] for a session in `rooms`, each joined at the
        matching `since` offset (see `_missed_sql`)."""
        if upto <= after:
            return []
        return await conn.fetch(self._missed_sql, nsp, after, upto, rooms, since)

    # nodes -------------------------------------------------------------------------------
    async def heartbeat(self, uid: str, namespaces: list[str]) -> list[str]:
        """Refresh the server's rows; returns the namespaces whose row could not be written.

        The server's own liveness row (namespace "", never a real one) keeps its live
        sessions valid whatever its namespaces are. When the one-statement batch fails on a
        value (not on the connection), each row is written alone, so one namespace Postgres
        refuses costs only its own row, never the others' heartbeat.
        """
        names = [NODE_ROW, *namespaces]
        try:
            await self.pool.execute(self._heartbeat_sql, uid, names)
            return []
        except _ROW_ERRORS:
            pass
        failed = []
        for name in names:
            try:
                await self.pool.execute(self._heartbeat_sql, uid, [name])
            except _ROW_ERRORS:
                failed.append(name)
        return failed

    async def leave(self, uid: str, namespaces: list[str]) -> None:
        await self.pool.execute(self._leave_sql, uid, namespaces)

    async def alive(self, timeout: float) -> dict[str, set[str]]:
        """nsp -> ids of servers seen within `timeout` seconds."""
        out: dict[str, set[str]] = {}
        for row in await self.pool.fetch(self._alive_sql, timeout):
            out.setdefault(row["nsp"], set()).add(row["uid"])
        return out

    async def server_count(self, nsp: str, timeout: float) -> int:
        return await self.pool.fetchval(self._count_sql, nsp, timeout)

    # pruning -----------------------------------------------------------------------------
    async def prune(self, retention: float, node_ttl: float, batch: int = 5000,
                    rounds: int | None = None) -> PruneResult:
        """Delete everything due: expired packets, sessions and dead nodes.

        Work goes in batches of `batch` rows, each its own short transaction (the log's
        ordering lock and readers are never held up for long) with an event-loop yield in
        between, and goes on until a batch comes back short: one pass removes all that was
        due when it started, so pruning keeps up with any publish rate Postgres can take (a
        delete batch costs about what the insert of its rows did). One process at a time
        prunes: each batch takes a try-lock, and a pass stops when another process holds it.
        Packets are scanned from the oldest id with a LIMIT, so a batch costs O(batch) even
        with nothing to delete. `rounds` caps the batches per table (None: until done).
        """
        q = self.q
        result = PruneResult()
        lock = "SELECT pg_try_advisory_xact_lock($1, hashtext($2))"
        steps = [
            (
                (f"WITH d AS (DELETE FROM {q}.packets WHERE id IN ("
                f" SELECT id FROM (SELECT id, created_at FROM {q}.packets ORDER BY id LIMIT $1) s"
                "  WHERE created_at < now() - make_interval(secs => $2)) RETURNING id, created_at)"
                " SELECT count(*) AS n, max(id) AS last, max(created_at) AS at FROM d"),
                retention, "packets",
            ),
            (
                (f"WITH d AS (DELETE FROM {q}.sessions WHERE pid IN ("
                f" SELECT pid FROM {q}.sessions WHERE expires_at < now() ORDER BY expires_at LIMIT $1)"
                " RETURNING 1) SELECT count(*) AS n, NULL::bigint AS last, NULL::timestamptz AS at FROM d"),
                None, "sessions",
            ),
            (  # live sessions of servers dead for longer than the window
                (f"WITH d AS (DELETE FROM {q}.sessions WHERE pid IN ("
                f" SELECT pid FROM {q}.sessions s WHERE expires_at IS NULL AND NOT EXISTS ("
                f"  SELECT 1 FROM {q}.nodes n WHERE n.uid = s.owner"
                "   AND n.last_seen > now() - make_interval(secs => $2)) LIMIT $1)"
                " RETURNING 1) SELECT count(*) AS n, NULL::bigint AS last, NULL::timestamptz AS at FROM d"),
                retention, "sessions",
            ),
            (
                (f"WITH d AS (DELETE FROM {q}.nodes WHERE ctid IN ("
                f" SELECT ctid FROM {q}.nodes WHERE last_seen < now() - make_interval(secs => $2) LIMIT $1)"
                " RETURNING 1) SELECT count(*) AS n, NULL::bigint AS last, NULL::timestamptz AS at FROM d"),
                node_ttl, "nodes",
            ),
        ]
        async with self.pool.acquire() as conn:
            for sql, arg, field in steps:
                for _ in itertools.repeat(None) if rounds is None else range(rounds):
                    async with conn.transaction():
                        if not await conn.fetchval(lock, _PRUNE_LOCK, self.schema):
                            result.skipped = True  # another process is pruning
                            return result
                        row = await conn.fetchrow(sql, batch, *(() if arg is None else (arg,)))
                        if row["last"] is not None:
                            await conn.execute(
                                f"UPDATE {q}.log_state SET pruned_through = greatest(pruned_through, $1),"
                                " pruned_at = greatest(pruned_at, $2)", row["last"], row["at"]
                            )
                    result.batches += 1
                    setattr(result, field, getattr(result, field) + row["n"])
                    if row["n"] < batch:
                        break
                    await asyncio.sleep(0)  # let the process serve between batches
        return result

    async def log_stats(self) -> LogStats:
        """Size and age of the packet log (two index probes)."""
        row = await self.pool.fetchrow(
            f"SELECT max(id) - min(id) + 1 AS span, extract(epoch FROM now() - ("
            f" SELECT created_at FROM {self.q}.packets ORDER BY id LIMIT 1)) AS age FROM {self.q}.packets"
        )
        return LogStats(rows=int(row["span"] or 0), oldest_age=float(row["age"] or 0.0))
