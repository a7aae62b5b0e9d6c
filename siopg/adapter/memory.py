"""The in-memory adapter: rooms index, local delivery, and the connection state recovery log.

One instance per namespace, one process. It is also the base class for cluster adapters:
they reuse the rooms index (`add_all`/`delete`/`delete_all` with room events),
`local_recipients()` and `broadcast_local()`, and override what crosses processes.

Recovery (when the namespace has `recovery` options): every eligible packet (EVENT, no ack id,
not volatile) gets the next offset (a decimal string, monotonic) appended as its last data
argument and is kept in a log for `max_disconnection_duration`. Compared with socket.io's
SessionAwareAdapter:
  * a session persisted before the client received any event still recovers: the session
    keeps the log head of when the socket connected (its `offset`), used when the client
    reconnects with a pid but no offset (socket.io#4888);
  * replayed packets keep their offsets and a session is consumed by its restore, so a packet
    is never replayed twice;
  * expiry pops from the head of the log and of the session table (both are in time order),
    so pruning costs O(expired) and needs no timer;
  * a replay holds only what the client could have been sent: each socket's join offset per
    room is kept (the log head when it joined; its own room's is the session start), a client
    offset older than the session start is clamped to it, and a packet to rooms is replayed
    only if the session joined one of them before the packet (socket.io replays anything
    after any offset the client names, filtered by the rooms it has at disconnect).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Callable, Iterable, NamedTuple

from siopg.adapter.base import (
    Adapter,
    BroadcastOptions,
    NamespaceLike,
    RestoredSession,
    Room,
    Session,
    SocketId,
)
from siopg.parser import Packet, PacketType

logger = logging.getLogger("siopg.adapter")
RoomListener = Callable[..., Any]
ROOM_EVENTS = ("create-room", "delete-room", "join-room", "leave-room")


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


def _parse_joins(raw: dict[Room, str] | None) -> dict[Room, int] | None:
    """Session.join_offsets (strings) as ints; None when absent or unreadable."""
    if not raw:
        return None
    try:
        return {room: int(value) for room, value in raw.items()}
    except (TypeError, ValueError, AttributeError):
        return None


class InMemoryAdapter(Adapter):
    """Single-process adapter with room events and an in-memory recovery log."""

    def __init__(self, nsp: NamespaceLike) -> None:
        super().__init__(nsp)
        self._listeners: dict[str, list[RoomListener]] = {}
        recovery = getattr(nsp, "recovery", None)
        self._window: float | None = recovery.max_disconnection_duration if recovery else None
        self._log: deque[_LogEntry] = deque()
        self._next_offset = 1  # offsets start at 1; "0" means "before anything"
        self._sessions: dict[str, tuple[Session, float]] = {}  # pid -> (session, persisted at); time order
        # sid -> room -> log head when the socket joined the room (kept only with recovery)
        self._joined: dict[SocketId, dict[Room, int]] = {}

    # room events -------------------------------------------------------------------------
    def on(self, event: str, handler: RoomListener) -> RoomListener:
        """Listen to "create-room"(room), "delete-room"(room), "join-room"(room, sid), "leave-room"(room, sid)."""
        if event not in ROOM_EVENTS:
            raise ValueError(f"unknown adapter event {event!r}; expected one of {ROOM_EVENTS}")
        self._listeners.setdefault(event, []).append(handler)
        return handler

    def off(self, event: str, handler: RoomListener | None = None) -> None:
        if handler is None:
            self._listeners.pop(event, None)
        elif handler in self._listeners.get(event, ()):
            self._listeners[event].remove(handler)

    def _emit(self, event: str, *args: Any) -> None:
        for handler in list(self._listeners.get(event, ())):
            try:
                result = handler(*args)
                if hasattr(result, "__await__"):
                    asyncio.ensure_future(result)
            except Exception:  # a listener bug must not break room bookkeeping
                logger.exception("error in %s listener", event)

    # rooms -------------------------------------------------------------------------------
    def add_all(self, sid: SocketId, rooms: Iterable[Room]) -> None:
        own = self.sids.get(sid)
        if own is None:
            own = self.sids[sid] = set()
        listening = bool(self._listeners)
        joined: dict[Room, int] | None = None
        if self._window is not None:
            joined = self._joined.get(sid)
            if joined is None:
                joined = self._joined[sid] = {}
            head = self._log_head()
        for room in rooms:
            own.add(room)
            if joined is not None and room not in joined:
                joined[room] = head
            members = self.rooms.get(room)
            if members is None:
                members = self.rooms[room] = set()
                if listening:
                    self._emit("create-room", room)
            if sid not in members:
                members.add(sid)
                if listening:
                    self._emit("join-room", room, sid)

    def delete(self, sid: SocketId, room: Room) -> None:
        own = self.sids.get(sid)
        if own is not None:
            own.discard(room)
        joined = self._joined.get(sid)
        if joined is not None:
            joined.pop(room, None)
        self._del(room, sid)

    def _del(self, room: Room, sid: SocketId) -> None:
        members = self.rooms.get(room)
        if members is None:
            return
        if sid in members:
            members.discard(sid)
            if self._listeners:
                self._emit("leave-room", room, sid)
        if not members:
            del self.rooms[room]
            if self._listeners:
                self._emit("delete-room", room)

    def delete_all(self, sid: SocketId) -> None:
        self._joined.pop(sid, None)
        own = self.sids.pop(sid, None)
        if own is None:
            return
        for room in own:
            self._del(room, sid)

    # delivery ----------------------------------------------------------------------------
    def local_recipients(self, opts: BroadcastOptions) -> Iterable[SocketId]:
        """Ids of local sockets matching `opts` (a snapshot, safe to iterate while delivering)."""
        rooms = opts.rooms
        if rooms:
            if len(rooms) == 1:
                (room,) = rooms
                ids: Iterable[SocketId] = self.rooms.get(room, ())
            else:
                merged: set[SocketId] = set()
                for room in rooms:
                    members = self.rooms.get(room)
                    if members:
                        merged |= members
                ids = merged
        else:
            ids = self.sids.keys()
        if opts.except_:
            excluded: set[SocketId] = set()
            for room in opts.except_:
                members = self.rooms.get(room)
                if members:
                    excluded |= members
            if excluded:
                return [sid for sid in ids if sid not in excluded]
        return tuple(ids)

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
        self.nsp.deliver(packet, self.local_recipients(opts), opts.flags)

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        self.broadcast_local(self.record(packet, opts), opts)

    def broadcast_with_ack(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count_callback: Callable[[int], None],
        ack: Callable[[Any], None],
    ) -> None:
        count = self.nsp.deliver_with_ack(packet, self.local_recipients(opts), opts.flags, ack)
        client_count_callback(count)

    async def server_count(self) -> int:
        return 1

    # socket operations -------------------------------------------------------------------
    async def sockets(self, rooms: frozenset[Room]) -> set[SocketId]:
        return set(self.local_recipients(BroadcastOptions(rooms=rooms)))

    def local_sockets(self, opts: BroadcastOptions) -> list[Any]:
        found = []
        for sid in self.local_recipients(opts):
            socket = self.nsp.local_socket(sid)
            if socket is not None:
                found.append(socket)
        return found

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Any]:
        return self.local_sockets(opts)

    def add_sockets(self, opts: BroadcastOptions, rooms: list[Room]) -> None:
        for socket in self.local_sockets(opts):
            socket.join(rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: list[Room]) -> None:
        for socket in self.local_sockets(opts):
            for room in rooms:
                socket.leave(room)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        for socket in self.local_sockets(opts):
            socket.disconnect(close)

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

    def _log_head(self) -> int:
        """The newest log offset this adapter has delivered locally: what a socket joining a
        room now is past (a cluster adapter with its own log overrides this)."""
        return self._next_offset - 1

    def join_offsets(self, sid: SocketId) -> dict[Room, str] | None:
        if self._window is None:
            return None
        joined = self._joined.get(sid)
        return {room: str(offset) for room, offset in joined.items()} if joined else None

    def restore_join_offsets(self, sid: SocketId, offsets: dict[Room, str]) -> None:
        joined = self._joined.get(sid)
        parsed = _parse_joins(offsets)
        if joined is None or parsed is None:
            return
        for room, offset in parsed.items():
            if room in joined:
                joined[room] = offset

    async def persist_session(self, session: Session) -> None:
        if self._window is None:
            return
        now = time.monotonic()
        self._sessions.pop(session.pid, None)  # re-insert at the end: the table stays in time order
        self._sessions[session.pid] = (session, now)
        self._prune_sessions(now)

    async def restore_session(self, pid: str, offset: str | None) -> RestoredSession | None:
        if self._window is None:
            return None
        now = time.monotonic()
        self._prune_sessions(now)
        self._prune_log(now)
        found = self._sessions.pop(pid, None)  # one restore per persist: no double replay
        if found is None:
            return None
        session = found[0]
        base_text = offset if offset is not None else session.offset
        try:
            base = int(base_text) if base_text is not None else self._next_offset - 1
        except ValueError:
            return None
        head = self._next_offset - 1
        first = self._log[0].offset if self._log else self._next_offset
        if base > head or base < 0:
            return None  # not an offset of this log (another process or a forged value)
        joins = _parse_joins(session.join_offsets)
        start = joins.get(session.sid) if joins else None
        if start is not None and base < start:
            base = start  # nothing from before the session itself, whatever offset is named
        if base < first - 1 and offset is not None:
            return None  # packets after the client's offset have expired: cannot recover exactly
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
        threshold = now - self._window
        log = self._log
        while log and log[0].at < threshold:
            log.popleft()

    def _prune_sessions(self, now: float) -> None:
        assert self._window is not None
        threshold = now - self._window
        sessions = self._sessions
        while sessions:
            pid = next(iter(sessions))
            if sessions[pid][1] >= threshold:
                break
            del sessions[pid]

    async def close(self) -> None:
        self._log.clear()
        self._sessions.clear()
        self._joined.clear()
