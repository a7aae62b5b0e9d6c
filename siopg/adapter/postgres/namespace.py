"""One namespace's view of the Postgres cluster: publishing through the shared publisher,
membership answers, the live session snapshot of its sockets, persist, takeover and restore.

Made by `PostgresAdapter(...)(nsp)`; everything it shares with the other namespaces of its
process (pool, reader, publisher, session writer, heartbeats) is on its `PgCluster`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from siopg.adapter.base import NamespaceLike, RecoveryUnavailable, RestoredSession, Session
from siopg.adapter.cluster import ClusterAdapter, ClusterMessage, MessageType, ping_bound
from siopg.adapter.errors import (
    ERROR,
    EXPIRED,
    OFFSET_INVALID,
    OFFSET_PRUNED,
    UNAVAILABLE,
    UNKNOWN_SESSION,
    RecoveryRefused,
    refuse,
)
from siopg.adapter.postgres import codec
from siopg.adapter.postgres.listener import LogListener
from siopg.adapter.postgres.sessions import Dirty, Forget, Persist, parse_offset
from siopg.adapter.postgres.store import is_transient
from siopg.adapter.rooms import parse_joins
from siopg.parser import Packet, PacketType

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from siopg.adapter.postgres.adapter import PgCluster


class _Claim:
    """A restore of `pid` on this server, from just before it claims the session row until
    its socket is attached (or the restore ended without one). `hand_over` waits on it: in
    that gap the row is this server's live session but no socket holds it yet, and answering
    "not here" would let a third server claim the row too (a clone)."""

    __slots__ = ("done", "pid", "revoked", "sid")

    def __init__(self, pid: str, sid: str) -> None:
        self.pid = pid
        self.sid = sid
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.revoked = False  # handed over before it attached: it must never attach


class _Lookup:
    """A SESSION_LOOKUP this server sent: the servers yet to answer at all, and those that
    answered "held, being written" and owe a final answer."""

    __slots__ = ("changed", "pending", "unanswered")

    def __init__(self, others: set[str]) -> None:
        self.unanswered = set(others)
        self.pending: set[str] = set()
        self.changed = asyncio.Event()


class _ReaderBehind(TimeoutError):
    """The log reader has not reached the offset a restore needs yet: transient (retried
    until `restore_timeout`, then the client is told to come back), never a fresh session."""


class PostgresNamespaceAdapter(ClusterAdapter):
    """One namespace's view of the cluster (made by `PostgresAdapter(...)(nsp)`)."""

    # TEST ONLY: awaited between a restore's claim of the session row and the attach of its
    # socket, so tests can widen that gap (tests/hostile/apps/fix2_app.py). Never set it.
    after_claim: Callable[[], Awaitable[None]] | None = None

    def __init__(self, nsp: NamespaceLike, cluster: PgCluster) -> None:
        super().__init__(nsp, cluster.uid)
        self.cluster = cluster
        self.request_timeout = cluster.options.request_timeout
        recovery = getattr(nsp, "recovery", None)
        self.window: float | None = recovery.max_disconnection_duration if recovery else None
        # join offsets (decision 2 of issue 7) are kept by the rooms index (ClusterAdapter),
        # taken at the reader's head (_log_head)
        self._restoring_pids: dict[str, str] = {}  # sid -> pid of a restored socket
        self.handing_over: set[str] = set()  # pids being handed to another connection
        self._claims: dict[str, _Claim] = {}  # pid -> restore claimed here, not attached yet
        self._lookups: dict[str, _Lookup] = {}  # request id -> SESSION_LOOKUP sent, not done

    async def init(self) -> None:
        await self.cluster.register(self)

    async def close(self) -> None:
        if self._closed:
            return
        await super().close()  # publishes ADAPTER_CLOSE
        await self.cluster.unregister(self)

    # transport ---------------------------------------------------------------------------
    def do_publish(self, message: ClusterMessage) -> bool:
        return self.cluster.publish(message)

    def wire_check(self, value: Any) -> None:
        codec.pack(value)  # raises TypeError on what msgpack cannot carry

    def publish_stats(self) -> tuple[int, dict[str, int]] | None:
        """The publish buffer of this adapter's cluster (shared by its namespaces, hence the
        id to count it once): depth, bytes, refused and dropped messages, for /metrics."""
        publisher = self.cluster.publisher
        if publisher is None:
            return None
        return id(publisher), {
            "messages": publisher.pending,
            "bytes": publisher.pending_bytes,
            "refused": publisher.refused,
            "dropped": publisher.dropped,
        }

    def ping_bound(self) -> float | None:
        """`ping_interval + ping_timeout` of this namespace's server (how long a dead client
        connection can go unnoticed), read without importing the server; None if unknown."""
        return ping_bound(self.nsp)

    async def other_server_ids(self) -> set[str]:
        return await self.cluster.membership.others(self.nsp.name)

    async def server_count(self) -> int:
        return await self.cluster.membership.count(self.nsp.name)

    # rooms: keep the live session snapshot current -------------------------------------
    def _log_head(self) -> int:
        listener = self.cluster.listener
        return listener.last_id if listener is not None else 0

    def add_all(self, sid: str, rooms: Any) -> None:
        super().add_all(sid, rooms)
        if self.window is not None:
            self.cluster.sessions.queue(Dirty(self, sid))
            pid = self._restoring_pids.get(sid)
            claim = self._claims.get(pid) if pid is not None else None
            if claim is not None and claim.sid == sid:
                socket = self.nsp.local_socket(sid)
                if socket is not None and getattr(socket, "pid", None) == pid:
                    # the restored socket is attached (it joins its own room on connect)
                    self._settle(claim)
                    if claim.revoked:  # handed over while its middlewares ran: let it go
                        asyncio.get_running_loop().call_soon(_close_connection, socket)

    def delete(self, sid: str, room: str) -> None:
        super().delete(sid, room)
        if self.window is not None:
            self.cluster.sessions.queue(Dirty(self, sid))

    def delete_all(self, sid: str) -> None:
        if self.window is not None:
            restoring = self._restoring_pids.pop(sid, None)  # restored, maybe never connected
            claim = self._claims.get(restoring) if restoring is not None else None
            if claim is not None and claim.sid == sid:
                self._settle(claim)  # gone before it attached (refused, or its client left)
            pid = getattr(self.nsp.local_socket(sid), "pid", None) or restoring
            if pid:
                # the socket left: drop its live snapshot (a recoverable disconnect persists
                # the session right after, through the same ordered queue)
                self.cluster.sessions.queue(Forget(self, sid, pid, asyncio.get_running_loop().time()))
        super().delete_all(sid)

    def joins_json(self, sid: str, rooms: list[str]) -> str | None:
        """The JSON {room: join offset} of a live socket's `rooms` (None: not tracked)."""
        joins = self.index.joins.of(sid) if self.index.joins is not None else None
        if joins is None:
            return None
        return json.dumps({room: joins[room] for room in rooms if room in joins})

    # connection state recovery -----------------------------------------------------------
    @property
    def supports_recovery(self) -> bool:
        return self.window is not None

    def current_offset(self) -> str | None:
        if self.window is None or self.cluster.listener is None:
            return None
        return str(self.cluster.listener.last_id)

    async def persist_session(self, session: Session) -> None:
        if self.window is None or self.cluster.store is None:
            return
        claim = self._claims.get(session.pid)
        try:
            await self._persist(session)
        finally:
            if claim is not None and claim.sid == session.sid and self.nsp.local_socket(session.sid) is None:
                self._settle(claim)  # a restored session put back unattached (client gone meanwhile)

    def _settle(self, claim: _Claim) -> None:
        if not claim.done.done():
            claim.done.set_result(None)
        if self._claims.get(claim.pid) is claim:
            del self._claims[claim.pid]

    async def _persist(self, session: Session) -> None:
        """Queue `session` (its join offsets are those the server read from `join_offsets`
        while the socket was still in its rooms) and wait until it was attempted."""
        assert self.window is not None
        joins = _session_joins(session.join_offsets)
        try:
            data = self.cluster.sessions.pack_data(session.sid, session.data)
        except Exception as exc:  # noqa: BLE001 - the client will just get a fresh session
            self.cluster.report(exc)
            return
        rooms = list(session.rooms)
        joined = json.dumps({r: joins[r] for r in rooms if r in joins}) if joins is not None else None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.cluster.sessions.queue(Persist(
            session.pid, session.sid, self.nsp.name, rooms, data, parse_offset(session.offset), joined,
            self.window, loop.time(), done,
        ))
        await done

    # takeover (decision 3 of issue 7) ----------------------------------------------------
    def on_session_takeover(self, message: ClusterMessage) -> None:
        data = message.data
        sid, pid, request_id = data.get("sid"), data.get("pid"), str(data.get("requestId"))
        if not isinstance(sid, str) or not isinstance(pid, str):
            raise ValueError("a session takeover names a sid and a pid")
        requester = message.uid

        async def answer() -> None:
            handed = False
            try:
                handed = await self.hand_over(sid, pid)
            finally:
                self.publish_response(
                    requester, MessageType.SESSION_TAKEOVER_RESPONSE, {"requestId": request_id, "value": handed}
                )

        self._tasks.spawn(answer(), "a session request's answer")

    async def hand_over(self, sid: str, pid: str) -> bool:
        """Another connection presents `pid`: if this server holds that socket, write its final
        state (rooms, data, join offsets) as a persisted session and close its Engine.IO
        connection, so its client notices; True if it did. Either way, the session writes
        queued before return first (a persist in flight lands before the answer).

        A restore of `pid` that claimed the row here but has not attached its socket yet is
        waited for (at most half the asker's `takeover_timeout`), then handed over as usual;
        one still not attached by then is revoked (it never attaches; its client is told to
        come back) and the row, as claimed, is the asker's."""
        claim = self._claims.get(pid)
        if claim is not None and not claim.done.done():
            try:
                await asyncio.wait_for(asyncio.shield(claim.done), self.cluster.options.takeover_timeout / 2)
            except TimeoutError:
                claim.revoked = True
                await self.cluster.sessions.barrier()
                return True
        socket = self.nsp.local_socket(sid)
        if socket is None or getattr(socket, "pid", None) != pid or self.window is None:
            await self.cluster.sessions.barrier()
            return False
        rooms = sorted(self.socket_rooms(sid) or ())
        # read before the connection closes (closing the socket forgets its rooms and joins)
        session = Session(
            sid, pid, self.nsp.name, rooms, socket.data, socket.recovery_offset, self.join_offsets(sid) or {}
        )
        self.handing_over.add(pid)
        try:
            _close_connection(socket)
            await self._persist(session)
        finally:
            self.handing_over.discard(pid)
        return True

    async def _ask_owner(self, owner: str, sid: str, pid: str) -> bool:
        """Ask `owner` to hand the session over; False when it did not answer in time."""
        if owner == self.uid:
            await self.hand_over(sid, pid)
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()

        def done(responses: list[Any], complete: bool) -> None:
            if not future.done():
                future.set_result(complete)

        timeout = self.cluster.options.takeover_timeout
        request_id = self._start_request(MessageType.SESSION_TAKEOVER, {owner}, done, timeout)
        self.do_publish(self._message(
            MessageType.SESSION_TAKEOVER, {"requestId": request_id, "sid": sid, "pid": pid}, target=owner
        ))
        return await future

    # a session not written yet (a pid handed out before its first row) --------------------
    def on_session_lookup(self, message: ClusterMessage) -> None:
        data = message.data
        pid, request_id = data.get("pid"), str(data.get("requestId"))
        if not isinstance(pid, str):
            raise ValueError("a session lookup names a pid")
        requester = message.uid

        def respond(value: bool | None, final: bool) -> None:
            self.publish_response(
                requester, MessageType.SESSION_LOOKUP_RESPONSE,
                {"requestId": request_id, "value": value, "final": final},
            )

        async def answer() -> None:
            held = False
            try:
                # a disconnect in the loop turn that delivered this queues its Forget at once
                # and its Persist from a task spawned then: let that task run first
                await asyncio.sleep(0)
                sid = self._holder_of(pid)
                if sid is None and not self.cluster.sessions.holds(pid):
                    return  # nothing of that session here (final False below)
                respond(None, False)  # "held": the asker waits past takeover_timeout for the rest
                if sid is not None:
                    held = await self.hand_over(sid, pid)
                else:
                    await self.cluster.sessions.barrier()  # its persist lands before the answer
                    held = True
            finally:
                respond(held, True)

        self._tasks.spawn(answer(), "a session request's answer")

    def _holder_of(self, pid: str) -> str | None:
        """The sid of this server's socket (connected, or a restore claimed not attached yet)
        holding `pid`. Scans the local sockets: only a restore that found no row asks."""
        claim = self._claims.get(pid)
        if claim is not None and not claim.done.done():
            return claim.sid
        for sid in list(self.index.sids):
            if getattr(self.nsp.local_socket(sid), "pid", None) == pid:
                return sid
        return None

    def _on_response(self, message: ClusterMessage) -> None:
        if message.type != MessageType.SESSION_LOOKUP_RESPONSE:
            super()._on_response(message)
            return
        lookup = self._lookups.get(str(message.data.get("requestId")))
        if lookup is None:
            return
        uid = message.uid
        if message.data.get("final") is True:
            lookup.unanswered.discard(uid)
            lookup.pending.discard(uid)
        elif uid in lookup.unanswered:
            lookup.unanswered.discard(uid)
            lookup.pending.add(uid)
        lookup.changed.set()

    def forget_server(self, uid: str) -> None:
        super().forget_server(uid)
        for lookup in self._lookups.values():
            if uid in lookup.unanswered or uid in lookup.pending:
                lookup.unanswered.discard(uid)
                lookup.pending.discard(uid)
                lookup.changed.set()

    async def _write_unwritten(self, pid: str) -> None:
        """No row for `pid`: have every server that holds its session unwritten (this one
        included) write it. A server that has not answered within `takeover_timeout` is taken
        for dead (what it did not write is lost with it); one that answered "held" is waited
        for until the restore's deadline (the caller's timeout: the client comes back later)."""
        if self.cluster.sessions.holds(pid):
            await self.cluster.sessions.barrier()  # its old socket here left moments ago
        others = await self.other_server_ids()
        if not others:
            return
        request_id = secrets.token_hex(8)
        lookup = self._lookups[request_id] = _Lookup(others)
        loop = asyncio.get_running_loop()
        answer_by = loop.time() + self.cluster.options.takeover_timeout
        try:
            self.do_publish(self._message(MessageType.SESSION_LOOKUP, {"requestId": request_id, "pid": pid}))
            while lookup.unanswered or lookup.pending:
                lookup.changed.clear()
                if not lookup.unanswered:
                    await lookup.changed.wait()  # bounded by the caller's deadline
                    continue
                try:
                    await asyncio.wait_for(lookup.changed.wait(), max(0.0, answer_by - loop.time()))
                except TimeoutError:
                    lookup.unanswered.clear()  # silent: dead
        finally:
            del self._lookups[request_id]

    # restore -----------------------------------------------------------------------------
    async def restore_session(self, pid: str, offset: str | None) -> RestoredSession | None:
        c = self.cluster
        if self.window is None or c.store is None or c.listener is None:
            raise refuse(pid, UNAVAILABLE, "recovery off or the adapter is not started")
        if not isinstance(pid, str) or not 0 < len(pid) <= 128 or "\x00" in pid or not _encodable(pid):
            raise refuse(pid, UNKNOWN_SESSION, "malformed pid")
        client_offset: int | None = None
        if offset is not None:
            client_offset = parse_offset(offset)
            if client_offset is None:
                # not an offset we hand out: forged or garbled
                raise refuse(pid, OFFSET_INVALID, "malformed offset")
        # Postgres unreachable: wait for it up to restore_timeout, then tell the server to
        # close the client's connection (it comes back later), never a fresh session instead
        loop = asyncio.get_running_loop()
        deadline = loop.time() + c.options.restore_timeout
        delay = 0.05
        while True:
            try:
                # asyncio.timeout, not wait_for: no extra task, so the caller attaches the
                # socket in the same loop step as the replay ends (no live row in between)
                async with asyncio.timeout_at(deadline):
                    return await self._restore(pid, client_offset, deadline)
            except (asyncio.CancelledError, RecoveryUnavailable, RecoveryRefused):
                raise
            except Exception as exc:
                if not is_transient(exc):
                    c.report(exc)  # a bug or a value Postgres refuses: a fresh session, not a crash
                    raise refuse(pid, ERROR, "restore failed: %s", type(exc).__name__) from exc
                if loop.time() + delay >= deadline or c.store is None:
                    if not isinstance(exc, _ReaderBehind):  # a slow reader is no error to report
                        c.report(exc)
                    raise RecoveryUnavailable(f"session store unreachable: {type(exc).__name__}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _restore(self, pid: str, client_offset: int | None, deadline: float) -> RestoredSession | None:
        """`_claim_and_read`, with its claim marker settled unless a socket will attach."""
        claims: list[_Claim] = []
        try:
            restored = await self._claim_and_read(pid, client_offset, deadline, claims)
        except BaseException:
            for each in claims:
                self._settle(each)
            raise
        claim = claims[-1] if claims else None
        if claim is not None and (restored is None or claim.revoked):
            self._settle(claim)
            if restored is not None:  # handed to another server while we replayed: come back
                self._restoring_pids.pop(restored.sid, None)
                raise RecoveryUnavailable("the session was taken over by a newer connection meanwhile")
        return restored

    async def _claim_and_read(self, pid: str, client_offset: int | None, deadline: float,
                              claims: list[_Claim]) -> RestoredSession | None:
        """Read, claim and replay the session (RecoveryRefused: it does not exist, expired, or
        the offset is forged or pruned). Couldn't complete in time -> a transient error (the
        caller retries until `deadline`, then tells the client to come back)."""
        c = self.cluster
        loop = asyncio.get_running_loop()
        store, listener = c.store, c.listener
        if store is None or listener is None or c.pool is None:
            raise ConnectionError("the Postgres adapter is restarting")
        if client_offset is not None and client_offset > listener.last_id:
            # this process has not read that far yet: wait, or the live stream would repeat
            # rows the replay already holds (a forged offset is refused without waiting)
            if not await store.offset_exists(c.pool, client_offset, self.nsp.name):
                raise refuse(pid, OFFSET_INVALID, "offset %s ahead of the reader and not in the log", client_offset)
            if not await listener.wait_for(client_offset, _wait_left(loop, deadline)):
                _raise_if_reader_down(listener)
                raise _ReaderBehind(f"the log reader is behind offset {client_offset}")
        # owners asked to hand over: a row live again under ANOTHER owner (a concurrent
        # restore on a third server claimed it meanwhile) is asked again, never cloned
        asked: set[str] = set()
        looked_up = False  # other servers were asked for this pid's unwritten session
        window = self.window or 0.0
        while True:  # bounded by the caller's deadline (asyncio.timeout_at)
            takeover: tuple[str, str] | None = None
            lookup = False
            async with c.pool.acquire() as conn:
                # read the reader's position BEFORE the snapshot: every row up to it is then
                # visible to the snapshot (rows the reader handled are committed)
                upto = listener.last_id
                # An explicit transaction, not `async with conn.transaction()`: the one snapshot
                # must end (rolled back) BEFORE some paths go on, the wait for the log reader
                # and the takeover request (neither may hold a pooled connection and an old
                # snapshot open for seconds; the retry needs a fresh snapshot), and only the
                # claim path commits.
                tx = conn.transaction(isolation="repeatable_read")
                await tx.start()
                try:
                    session = await store.read_session(
                        conn, pid, self.nsp.name, c.options.heartbeat_timeout, window, c.dead_transport_bound()
                    )
                    if session is None and not looked_up:
                        # the pid may be handed out before its first row was written (a
                        # server's session writer lags): have it written, then read again
                        await tx.rollback()
                        looked_up = lookup = True
                    elif session is None or not session["valid"]:
                        await tx.rollback()
                        if session is None:
                            raise refuse(pid, UNKNOWN_SESSION, "no session row")
                        raise refuse(pid, EXPIRED, "session row expired (live=%s owner=%s alive=%s)",
                                     session["live"], session["owner"], session["owner_alive"])
                    elif session["live"] and session["owner"] not in asked and (
                        session["owner"] == self.uid or session["owner_alive"]
                    ):
                        # its socket may be connected right now: a takeover, never a clone
                        await tx.rollback()
                        takeover = (session["owner"], session["sid"])
                    else:
                        joined = _load_joins(session["joined"])
                        start = joined.get(session["sid"]) if joined is not None else None
                        base = client_offset if client_offset is not None else session["offset"]
                        if base is not None and start is not None and base < start:
                            base = start  # nothing older than the session itself
                        pruned = session["pruned_through"]
                        if base is None or (base < pruned and session["pruned_unsafe"]):
                            # packets after that offset are gone, and one may have been written
                            # after the client's connection was last known alive: a gap
                            await tx.rollback()
                            raise refuse(
                                pid, OFFSET_PRUNED, "offset %s pruned with rows it may have missed (session offset %s)",
                                base, session["offset"],
                            )
                        # (base < pruned otherwise: every pruned packet went to a live connection,
                        # so the client has those meant for it; replay what is left after base)
                        # a pruned offset cannot be checked; clamped at the session start it only
                        # decides what this client gets of what it was entitled to
                        if (
                            client_offset is not None
                            and client_offset == base
                            and client_offset != session["offset"]
                            and not (client_offset <= pruned and start is not None)
                            and not await store.offset_exists(conn, client_offset, self.nsp.name)
                        ):
                            await tx.rollback()  # refused without using up the session
                            raise refuse(pid, OFFSET_INVALID, "offset %s is no packet of this namespace", client_offset)
                        if base > upto:
                            await tx.rollback()  # keep the session; wait for the reader, then retry
                            if await listener.wait_for(base, _wait_left(loop, deadline)):
                                continue
                            _raise_if_reader_down(listener)
                            raise _ReaderBehind(f"the log reader is behind offset {base}")
                        rooms = list(session["rooms"])
                        since = [joined.get(r, 0) if joined is not None else 0 for r in rooms]
                        # marked BEFORE the claim: from its commit on, a takeover request for
                        # this pid waits for the attach instead of hearing "not here"
                        claim = _Claim(pid, session["sid"])
                        claims.append(claim)
                        self._claims[pid] = claim
                        await store.claim(conn, pid, self.uid)  # ours now, live: one atomic step
                        rows = list(await store.missed(conn, self.nsp.name, base, upto, rooms, since))
                        await tx.commit()
                except BaseException as exc:
                    try:
                        await tx.rollback()
                    except Exception:  # noqa: BLE001
                        pass
                    if isinstance(exc, asyncpg.SerializationError):
                        for each in claims:
                            self._settle(each)
                        claims.clear()
                        await asyncio.sleep(0.01)
                        continue  # the session row changed under us (its old server wrote it): retry
                    raise
            if lookup:
                await self._write_unwritten(pid)
                continue
            if takeover is not None:
                await self._ask_owner(*takeover, pid)
                asked.add(takeover[0])
                continue
            if self.after_claim is not None:
                await self.after_claim()
            # rows the reader handled meanwhile went to no socket of this session: add them
            while listener.last_id > upto:
                newer = listener.last_id
                rows.extend(await store.missed(c.pool, self.nsp.name, upto, newer, rooms, since))
                upto = newer
            missed = []
            for row in rows:
                try:
                    args = codec.decode(row).data.get("packet")
                except Exception:  # noqa: BLE001
                    continue
                if isinstance(args, list) and args:
                    missed.append(Packet(PacketType.EVENT, self.nsp.name, [*args, str(row["id"])]))
            data = codec.unpack(session["data"]) if session["data"] is not None else {}
            sid = session["sid"]
            # restored rooms keep their join offsets: the server gives them back to the socket
            # (restore_join_offsets) and, if the client left meanwhile, persists them again
            join_offsets = {r: str(joined.get(r, 0)) for r in rooms} if joined is not None else None
            self._restoring_pids[sid] = pid
            return RestoredSession(
                sid=sid, pid=pid, rooms=rooms, data=data, missed_packets=missed, join_offsets=join_offsets
            )


def _wait_left(loop: asyncio.AbstractEventLoop, deadline: float) -> float:
    """How long a restore may wait for its log reader: until just before `deadline`, so the
    wait ends as "reader behind" (not reported) rather than as the deadline's bare timeout."""
    return max(0.0, deadline - loop.time() - 0.1)


def _raise_if_reader_down(listener: LogListener) -> None:
    """The log reader is behind: while it is disconnected that is transient (wait, retry);
    otherwise the offset is not one this reader will reach soon."""
    if not listener.connected.is_set():
        raise ConnectionError("the log reader is reconnecting")


def _load_joins(raw: Any) -> dict[str, int] | None:
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        return None
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def _session_joins(raw: dict[str, str] | None) -> dict[str, int] | None:
    """`Session.join_offsets` as ints for the sessions row; {} stays {} (nothing joined is not
    "not tracked"), an unreadable map is "not tracked"."""
    if raw is None:
        return None
    if not raw:
        return {}
    return parse_joins(raw)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _close_connection(socket: Any) -> None:
    """Close the Engine.IO connection a socket rides on; its client notices and reconnects."""
    client = getattr(socket, "client", None)
    close = getattr(client, "_close", None)
    if close is not None:
        close("forced server close")
    else:
        socket.conn.close()
