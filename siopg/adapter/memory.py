"""The in-memory adapter: rooms index, local delivery, and the connection state recovery log.

One instance per namespace, one process. Its rooms index (rooms, room events, join offsets)
is a `RoomIndex` (rooms.py), which cluster adapters use too, by composition.

Recovery (when the namespace has `recovery` options): every eligible packet (EVENT, no ack id,
not volatile) gets the next offset (a decimal string, monotonic) appended as its last data
argument and is kept in a log for `max_disconnection_duration` plus how long a dead
connection can go unnoticed (the server's pings + 2 s). Compared with socket.io's
SessionAwareAdapter:
  * a session persisted before the client received any event still recovers: the session
    keeps the log head of when the socket connected (its `offset`), used when the client
    reconnects with a pid but no offset (socket.io#4888);
  * replayed packets keep their offsets and a session is consumed by its restore, so a packet
    is never replayed twice;
  * expiry pops from the head of the log and of the session table (both are in time order),
    so pruning costs O(expired) and needs no timer; a client quiet for longer than the log
    keeps still recovers (pruned packets went to its live connection), a restore is refused
    only if a packet it may have missed was pruned;
  * a replay holds only what the client could have been sent: each socket's join offset per
    room is kept (the log head when it joined; its own room's is the session start), a client
    offset older than the session start is clamped to it, and a packet to rooms is replayed
    only if the session joined one of them before the packet (socket.io replays anything
    after any offset the client names, filtered by the rooms it has at disconnect).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from siopg.adapter.base import (
    Adapter,
    BroadcastOptions,
    NamespaceLike,
    RestoredSession,
    Room,
    Session,
    SocketId,
)
from siopg.adapter.cluster import ping_bound
from siopg.adapter.errors import EXPIRED, OFFSET_INVALID, OFFSET_PRUNED, UNKNOWN_SESSION, refuse
from siopg.adapter.rooms import ROOM_EVENTS, RoomIndex, RoomListener, parse_joins
from siopg.parser import Packet, PacketType

__all__ = ["ROOM_EVENTS", "InMemoryAdapter", "should_include"]

EXPIRED_MEMORY = 60.0  # seconds an expired session's pid is remembered, at least


class _LogEntry(NamedTuple):
    offset: int
    rooms: frozenset[Room]
    except_: frozenset[Room]
    data: list[Any]  # ends with the offset string
    at: float  # time.monotonic() when emitted


def should_include(
    session_rooms: Iterable[Room],
    rooms: frozenset[Room],
    except_: frozenset[Room],
    joins: dict[Room, int] | None = None,
    offset: int = 0,
) -> bool:
    """Would a socket in `session_rooms` have received a packet sent to rooms/except?

    With `joins` (room -> offset current when the socket joined it), only rooms joined before
    the packet at `offset` count, for inclusion and exclusion alike: the socket was in them
    when the packet was sent. A room without a recorded join counts as joined at the start.
    """
    session_rooms = list(session_rooms)
    if joins:
        session_rooms = [r for r in session_rooms if joins.get(r, -1) < offset]
    included = not rooms or any(r in rooms for r in session_rooms)
    return included and not any(r in except_ for r in session_rooms)


class InMemoryAdapter(Adapter):
    """Single-process adapter with room events and an in-memory recovery log."""

    def __init__(self, nsp: NamespaceLike) -> None:
        super().__init__(nsp)
        recovery = getattr(nsp, "recovery", None)
        self._window: float | None = recovery.max_disconnection_duration if recovery else None
        # rooms, room events and (with recovery) join offsets: the index cluster adapters use too
        self.index = RoomIndex(nsp, track_joins=self._window is not None)
        self.rooms, self.sids = self.index.rooms, self.index.sids
        self._log: deque[_LogEntry] = deque()
        self._next_offset = 1  # offsets start at 1; "0" means "before anything"
        self._sessions: dict[str, tuple[Session, float]] = {}  # pid -> (session, persisted at); time order
        # pids of sessions whose window passed, kept one more window (at least EXPIRED_MEMORY
        # seconds; time order): a restore then says "expired" rather than "unknown session"
        self._expired: dict[str, float] = {}
        # How long a dead client connection can go unnoticed: the server's pings plus a margin.
        # The log keeps window + this, and a restore is refused only if a pruned packet was
        # logged after the client was last known to receive (see restore_session).
        ping = ping_bound(nsp)
        self._dead_transport = ping + 2.0 if ping is not None else 60.0
        self._pruned_through = 0  # newest offset pruned from the log
        self._pruned_at = float("-inf")  # when the newest pruned packet was logged (monotonic)

    # room events -------------------------------------------------------------------------
    def on(self, event: str, handler: RoomListener) -> RoomListener:
        """Listen to "create-room"(room), "delete-room"(room), "join-room"(room, sid), "leave-room"(room, sid)."""
        return self.index.on(event, handler)

    def off(self, event: str, handler: RoomListener | None = None) -> None:
        self.index.off(event, handler)

    # rooms -------------------------------------------------------------------------------
    def add_all(self, sid: SocketId, rooms: Iterable[Room]) -> None:
        # a room joined now is past every offset handed out so far
        self.index.add_all(sid, rooms, self._next_offset - 1)

    def delete(self, sid: SocketId, room: Room) -> None:
        self.index.delete(sid, room)

    def delete_all(self, sid: SocketId) -> None:
        self.index.delete_all(sid)

    # delivery ----------------------------------------------------------------------------
    def local_recipients(self, opts: BroadcastOptions) -> Iterable[SocketId]:
        """Ids of local sockets matching `opts` (a snapshot, safe to iterate while delivering)."""
        return self.index.recipients(opts)

    def record(self, packet: Packet, opts: BroadcastOptions) -> Packet:
        """Give an eligible packet its offset and keep it in the log (no-op when CSR is off).

        Returns a new Packet (the caller's is never mutated) whose data ends with the offset.
        """
        if (
            self._window is None
            or packet.type != PacketType.EVENT
            or packet.id is not None
            or opts.flags.volatile
        ):
            return packet
        offset = self._next_offset
        self._next_offset += 1
        data = [*packet.data, str(offset)]
        now = time.monotonic()
        self._log.append(_LogEntry(offset, opts.rooms, opts.except_, data, now))
        self._prune_log(now)
        return Packet(PacketType.EVENT, packet.nsp, data, None)

    def broadcast_local(self, packet: Packet, opts: BroadcastOptions) -> None:
        """Deliver an already-recorded packet to the matching local sockets."""
        self.nsp.deliver(packet, self.index.recipients(opts), opts.flags)

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        self.broadcast_local(self.record(packet, opts), opts)

    def broadcast_with_ack(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count_callback: Callable[[int], None],
        ack: Callable[[Any], None],
    ) -> None:
        count = self.nsp.deliver_with_ack(packet, self.index.recipients(opts), opts.flags, ack)
        client_count_callback(count)

    async def server_count(self) -> int:
        return 1

    # socket operations -------------------------------------------------------------------
    async def sockets(self, rooms: frozenset[Room]) -> set[SocketId]:
        return set(self.index.recipients(BroadcastOptions(rooms=rooms)))

    def local_sockets(self, opts: BroadcastOptions) -> list[Any]:
        return self.index.local_sockets(opts)

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Any]:
        return self.index.local_sockets(opts)

    def add_sockets(self, opts: BroadcastOptions, rooms: list[Room]) -> None:
        self.index.join_sockets(opts, rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: list[Room]) -> None:
        self.index.leave_sockets(opts, rooms)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        self.index.disconnect_sockets(opts, close)

    def server_side_emit(self, args: list[Any], ack: Callable[[Any], None] | None = None) -> None:
        """No other server exists: listeners elsewhere get nothing; an ack gets [] at once."""
        if ack is not None:
            asyncio.get_running_loop().call_soon(ack, [])

    # connection state recovery -----------------------------------------------------------
    @property
    def supports_recovery(self) -> bool:
        return self._window is not None

    def current_offset(self) -> str | None:
        if self._window is None:
            return None
        return str(self._next_offset - 1)

    def join_offsets(self, sid: SocketId) -> dict[Room, str] | None:
        joins = self.index.joins
        return joins.as_strings(sid) if joins is not None else None

    def restore_join_offsets(self, sid: SocketId, offsets: dict[Room, str]) -> None:
        if self.index.joins is not None:
            self.index.joins.restore(sid, offsets)

    async def persist_session(self, session: Session) -> None:
        if self._window is None:
            return
        now = time.monotonic()
        self._sessions.pop(session.pid, None)  # re-insert at the end: the table stays in time order
        self._expired.pop(session.pid, None)
        self._sessions[session.pid] = (session, now)
        self._prune_sessions(now)

    async def restore_session(self, pid: str, offset: str | None) -> RestoredSession | None:
        if self._window is None:
            return None
        now = time.monotonic()
        self._prune_sessions(now)
        self._prune_log(now)
        found = self._sessions.get(pid)  # popped once restored: one restore per persist, no double replay
        if found is None:
            if self._expired.pop(pid, None) is not None:
                raise refuse(pid, EXPIRED, "session expired")
            raise refuse(pid, UNKNOWN_SESSION, "no such session")
        session = found[0]
        base_text = offset if offset is not None else session.offset
        try:
            base = int(base_text) if base_text is not None else self._next_offset - 1
        except ValueError:
            raise refuse(pid, OFFSET_INVALID, "malformed offset") from None
        head = self._next_offset - 1
        if base > head or base < 0:
            # not an offset of this log (another process or a forged value)
            raise refuse(pid, OFFSET_INVALID, "offset %s is not one of this log (head %s)", base, head)
        joins = parse_joins(session.join_offsets)
        start = joins.get(session.sid) if joins else None
        if start is not None and base < start:
            base = start  # nothing from before the session itself, whatever offset is named
        if base < self._pruned_through and self._pruned_at >= found[1] - self._dead_transport:
            # packets after the base are gone, and one was logged after the client's connection
            # was last known alive (its disconnect minus how long a dead one goes unnoticed):
            # it may have missed it. Older ones went to a live connection: it has those.
            raise refuse(pid, OFFSET_PRUNED, "offset %s pruned (log pruned through %s)", base, self._pruned_through)
        # refused above without using the session up (a forged offset cannot burn the real
        # client's session, as with the Postgres adapter); from here on it is restored
        del self._sessions[pid]
        # With no client offset the client got no offset-bearing event since `session.offset`,
        # so every stored packet after it that matches the rooms is missed.
        missed = []
        for entry in reversed(self._log):  # newest first: cost is O(packets after base)
            if entry.offset <= base:
                break
            if should_include(session.rooms, entry.rooms, entry.except_, joins, entry.offset):
                missed.append(Packet(PacketType.EVENT, self.nsp.name, list(entry.data), None))
        missed.reverse()
        return RestoredSession(
            sid=session.sid,
            pid=session.pid,
            rooms=list(session.rooms),
            data=session.data,
            missed_packets=missed,
            join_offsets=session.join_offsets,
        )

    def _prune_log(self, now: float) -> None:
        assert self._window is not None
        # window + how long a dead connection goes unnoticed: a session inside its window
        # never finds a packet pruned that it could have missed
        threshold = now - self._window - self._dead_transport
        log = self._log
        while log and log[0].at < threshold:
            entry = log.popleft()
            self._pruned_through, self._pruned_at = entry.offset, entry.at

    def _prune_sessions(self, now: float) -> None:
        assert self._window is not None
        threshold = now - self._window
        sessions, expired = self._sessions, self._expired
        while expired:
            pid = next(iter(expired))
            if expired[pid] >= threshold - max(self._window, EXPIRED_MEMORY):
                break
            del expired[pid]
        while sessions:
            pid = next(iter(sessions))
            at = sessions[pid][1]
            if at >= threshold:
                break
            del sessions[pid]
            expired[pid] = at

    async def close(self) -> None:
        self._log.clear()
        self._sessions.clear()
        self._expired.clear()
        self.index.clear()
