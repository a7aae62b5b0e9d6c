"""The session writer: one task per process writes the sessions of its sockets, in order.

Operations are small typed records queued by the namespace adapters: `Dirty` (a live socket's
rooms changed or it connected: snapshot it), `Forget` (it left: delete its live snapshot after
FORGET_GRACE unless its session gets persisted or the socket comes back), `Persist` (a
disconnected socket's session, kept for the recovery window) and `Barrier` (resolved once
everything queued before it was attempted). A value Postgres refuses costs only its own
socket's write (the batch is bisected); while Postgres is unreachable the writes are kept, in
order, and retried (one per socket, persisted sessions until their window ends).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from siopg.adapter.postgres import codec
from siopg.adapter.postgres.store import Store, is_transient
from siopg.errors import SiopgError

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from siopg.adapter.postgres.namespace import PostgresNamespaceAdapter

log = logging.getLogger("siopg.adapter.postgres")
_MAX_OFFSET = 2**63 - 1


class SessionWriteError(RuntimeError, SiopgError):
    """One socket's session could not be written (a value Postgres refuses); others were."""


@dataclass(slots=True)
class Dirty:
    """A live socket's rooms changed (or it connected): snapshot it on the next pass."""

    adapter: PostgresNamespaceAdapter
    sid: str


@dataclass(slots=True)
class Forget:
    """A socket left: delete its live snapshot after FORGET_GRACE unless it is kept."""

    adapter: PostgresNamespaceAdapter
    sid: str
    pid: str
    at: float


@dataclass(slots=True)
class Persist:
    """A disconnected socket's session, kept for `ttl` seconds (the recovery window)."""

    pid: str
    sid: str
    nsp: str
    rooms: list[str]
    data: bytes
    offset: int | None
    joined: str | None  # JSON {room: join offset}
    ttl: float
    at: float
    done: asyncio.Future[None]


@dataclass(slots=True)
class Barrier:
    """Resolved once every op queued before it was attempted."""

    done: asyncio.Future[None]


SessionOp = Dirty | Forget | Persist | Barrier  # what SessionWriter.queue takes


def _resolve(ops: list[Any]) -> None:
    for op in ops:
        done = getattr(op, "done", None)
        if done is not None and not done.done():
            done.set_result(None)


def _short(value: Any, limit: int = 200) -> str:
    """A client-supplied value (a name, an error quoting it) cut for logs."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


class SessionWriter:
    """Applies the queued session operations of one process in order (one task).

    `store` is set while the cluster runs (`start`); ops queued meanwhile wait for it.
    """

    def __init__(self, uid: str, snapshot_interval: float, report: Callable[[BaseException], None]) -> None:
        self.uid = uid
        self.snapshot_interval = snapshot_interval
        self.report = report
        self.store: Store | None = None
        self._ops: list[SessionOp] = []
        self._applying: list[SessionOp] = []  # the ops of the pass in flight
        self._failing = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._lossy: set[str] = set()  # sids whose data was saved with replacements (warned)

    def pack_data(self, sid: str, data: Any) -> bytes:
        """A socket's `data` for its session row; a value msgpack cannot carry (a datetime,
        an integer over 64 bits, e.g. from a client's auth the app stored) becomes None so the
        session is still written (warned once per socket; see codec.pack_state)."""
        packed, replaced = codec.pack_state(data)
        if replaced and sid not in self._lossy:
            if len(self._lossy) >= 10_000:  # bounded: a warning may repeat, memory may not grow
                self._lossy.clear()
            self._lossy.add(sid)
            log.warning("siopg postgres adapter (%s): session of socket %s saved with None for what msgpack"
                        " cannot carry in its data: %s", self.uid, sid, _short(", ".join(replaced)))
        return packed

    def start(self, store: Store) -> asyncio.Task[None]:
        """Start writing through `store`; the caller owns (and cancels) the returned task."""
        self.store = store
        return asyncio.get_running_loop().create_task(self._run(), name="siopg-sessions")

    def stop(self) -> None:
        self.store = None

    async def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued (False: still pending after `timeout`)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # A socket leaving queues a Forget: its live snapshot is deleted unless the session gets
    # persisted (a recoverable disconnect: persist_session follows within the same loop turn)
    # or the socket comes back (a restore on this server keeps the sid). Forgets wait
    # FORGET_GRACE seconds for that, so a client reconnecting elsewhere never finds a gap
    # between the live snapshot and the persisted session.
    FORGET_GRACE = 0.3

    def queue(self, op: SessionOp) -> None:
        if isinstance(op, Persist):
            pid = op.pid
            self._ops = [o for o in self._ops if not (isinstance(o, Forget) and o.pid == pid)]
        self._ops.append(op)
        self._idle.clear()
        if isinstance(op, (Persist, Barrier)):
            self._wake.set()

    def holds(self, pid: str) -> bool:
        """True while a write of `pid`'s session (its persist, or the forget of its live
        snapshot that a persist may follow) is queued or in flight. O(queue): only asked when
        a restore found no row for `pid` (SESSION_LOOKUP), never on the normal path."""
        return any(
            isinstance(op, (Persist, Forget)) and op.pid == pid for ops in (self._applying, self._ops) for op in ops
        )

    async def barrier(self) -> None:
        """Return once every session write queued before this call was attempted."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue(Barrier(done))
        await done

    async def _run(self) -> None:
        while True:
            if not self._ops:
                self._idle.set()
            try:
                await asyncio.wait_for(self._wake.wait(), min(self.snapshot_interval, self.FORGET_GRACE))
            except TimeoutError:
                pass
            self._wake.clear()
            if not self._ops:
                continue
            ops, self._ops = self._ops, []
            self._applying = ops
            try:
                await self._apply(ops)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bug, not Postgres: report, go on
                self.report(exc)
                _resolve(ops)
            finally:
                self._applying = []

    async def _apply(self, ops: list[SessionOp]) -> None:
        """Apply `ops` in order. A value Postgres refuses costs only its own socket's write
        (see _write_snapshots); when Postgres is unreachable, what was not written is kept,
        in order, for the next pass (callers waiting on a persist are released at once)."""
        assert self.store is not None
        now = asyncio.get_running_loop().time()
        forget: list[Forget] = []
        later: list[SessionOp] = []
        dirty: dict[tuple[int, str], Dirty] = {}
        start = 0  # ops[:start] are written (or were dropped for a bad value)
        try:
            for i, op in enumerate(ops):
                if isinstance(op, Forget):
                    (later if now - op.at < self.FORGET_GRACE else forget).append(op)
                elif isinstance(op, Dirty):
                    dirty[(id(op.adapter), op.sid)] = op
                else:  # persist / barrier: write what came before it first, so it lands last
                    if isinstance(op, Persist):
                        pid = op.pid
                        forget = [f for f in forget if f.pid != pid]
                        later = [o for o in later if not (isinstance(o, Forget) and o.pid == pid)]
                    await self._write_snapshots(dirty, forget)
                    forget, dirty = [], {}
                    start = i
                    if isinstance(op, Persist):
                        await self._persist(op)
                    start = i + 1
                    _resolve([op])
            await self._write_snapshots(dirty, forget)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if not self._failing:
                self._failing = True
                self.report(exc)
            keep = ops[start:]
            _resolve(keep)  # nobody waits for an outage; the writes themselves are kept
            pending = {id(o) for o in keep}
            later = [o for o in later if id(o) not in pending]
            self._ops[:0] = later + self._retry_ops(keep, now)
            return
        if self._failing:
            self._failing = False
            log.info("siopg postgres adapter (%s): session writes go through again", self.uid)
        if later:
            self._ops[:0] = later

    def _retry_ops(self, ops: list[SessionOp], now: float) -> list[SessionOp]:
        """What to keep of unwritten ops: no barriers, one persist per pid (the last), none
        past its window (nobody can recover it any more), one dirty per socket."""
        last_persist: dict[str, int] = {}
        for i, op in enumerate(ops):
            if isinstance(op, Persist):
                last_persist[op.pid] = i
        out: list[SessionOp] = []
        seen: set[tuple[int, str]] = set()
        for i, op in enumerate(ops):
            if isinstance(op, Barrier):
                continue
            if isinstance(op, Persist) and (last_persist[op.pid] != i or now - op.at > op.ttl):
                continue
            if isinstance(op, Dirty):
                key = (id(op.adapter), op.sid)
                if key in seen:
                    continue
                seen.add(key)
            out.append(op)
        return out

    async def _persist(self, op: Persist) -> None:
        assert self.store is not None
        # expires_at = disconnect + window even when the write is late (retried after an
        # outage): restores read the disconnect time back as expires_at - window
        ttl = max(0.001, op.ttl - (asyncio.get_running_loop().time() - op.at))
        try:
            await self.store.persist(
                op.pid, op.sid, op.nsp, op.rooms, op.data, op.offset, op.joined, self.uid, ttl
            )
        except Exception as exc:
            if is_transient(exc):
                raise
            self.report(SessionWriteError(f"session of socket {op.sid} in {_short(op.nsp)} not saved: {_short(exc)}"))

    async def _write_snapshots(self, dirty: dict[tuple[int, str], Dirty], forget: list[Forget]) -> None:
        assert self.store is not None
        rows = []
        for op in dirty.values():
            adapter, sid = op.adapter, op.sid
            socket = adapter.nsp.local_socket(sid)
            pid = getattr(socket, "pid", None)
            if socket is None or not pid or adapter.window is None or pid in adapter.handing_over:
                continue
            try:
                data = self.pack_data(sid, socket.data)
            except Exception as exc:  # noqa: BLE001
                self.report(exc)
                continue
            rooms = sorted(adapter.socket_rooms(sid) or ())
            offset = parse_offset(socket.recovery_offset)
            joined = adapter.joins_json(sid, rooms)
            rows.append((pid, sid, adapter.nsp.name, codec.json_list(rooms), data, offset, joined))
        alive = {row[0] for row in rows}
        # the socket came back here (restored: same sid) or its pid is written anew
        pids = [f.pid for f in forget if f.sid not in f.adapter.sids and f.pid not in alive]
        if not rows and not pids:
            return
        try:
            await self.store.snapshot(rows, pids, self.uid)
        except Exception as exc:
            if is_transient(exc):
                raise
            # a value Postgres refuses (finding 1 of issue 7): isolate the bad rows by bisection
            # so every other socket's snapshot still lands
            if pids:
                await self.store.snapshot([], pids, self.uid)
            await self._snapshot_rows(rows)

    async def _snapshot_rows(self, rows: list[Any]) -> None:
        assert self.store is not None
        if not rows:
            return
        try:
            await self.store.snapshot(rows, [], self.uid)
            return
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(rows) == 1:
                self.report(SessionWriteError(f"session of socket {rows[0][1]} in {_short(rows[0][2])} not saved:"
                                              f" {_short(exc)}"))
                return
        mid = len(rows) // 2
        await self._snapshot_rows(rows[:mid])
        await self._snapshot_rows(rows[mid:])


def parse_offset(value: Any) -> int | None:
    """An offset as the sessions table stores it (bigint), or None: not one we hand out."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= _MAX_OFFSET else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
        return number if number <= _MAX_OFFSET else None
    return None
