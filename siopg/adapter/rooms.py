"""The local rooms index every adapter uses by composition: who is in which room here, the
room events, and (with connection state recovery) the log offset at which each socket joined
each room.

`InMemoryAdapter` and `ClusterAdapter` (so the Postgres adapter) each own one `RoomIndex`;
they differ only in where a log offset comes from (the head they pass to `add_all`: the
memory log's last offset, or the Postgres reader's `last_id`).

Join offsets (decision 2 of issue 7): a replay holds only what the client could have been
sent, so each socket's join offset per room is kept; its own room's (joined at connect) is
the session start. `JoinOffsets` is the one implementation; the server reads it through
`Adapter.join_offsets(sid)` into `Session.join_offsets` and gives a restored socket's rooms
their original offsets back through `Adapter.restore_join_offsets`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from siopg._tasks import TaskSet
from siopg.adapter.base import BroadcastOptions, NamespaceLike, Room, SocketId

logger = logging.getLogger("siopg.adapter")
RoomListener = Callable[..., Any]
ROOM_EVENTS = ("create-room", "delete-room", "join-room", "leave-room")


def parse_joins(raw: dict[Room, str] | None) -> dict[Room, int] | None:
    """`Session.join_offsets` (strings) as ints; None when absent, empty or unreadable."""
    if not raw:
        return None
    try:
        return {room: int(value) for room, value in raw.items()}
    except (TypeError, ValueError, AttributeError):
        return None


class JoinOffsets:
    """Per socket and room, the log offset current when the socket joined the room."""

    __slots__ = ("_by_sid",)

    def __init__(self) -> None:
        self._by_sid: dict[SocketId, dict[Room, int]] = {}

    def joined(self, sid: SocketId, rooms: Iterable[Room], head: int) -> None:
        """`sid` is in `rooms` now; rooms it was already in keep their first offset."""
        joins = self._by_sid.get(sid)
        if joins is None:
            joins = self._by_sid[sid] = {}
        for room in rooms:
            if room not in joins:
                joins[room] = head

    def left(self, sid: SocketId, room: Room) -> None:
        joins = self._by_sid.get(sid)
        if joins is not None:
            joins.pop(room, None)

    def forget(self, sid: SocketId) -> None:
        self._by_sid.pop(sid, None)

    def of(self, sid: SocketId) -> dict[Room, int] | None:
        """The live room -> offset map of `sid` (do not mutate), or None."""
        return self._by_sid.get(sid)

    def as_strings(self, sid: SocketId) -> dict[Room, str] | None:
        """What `Session.join_offsets` holds: offsets as strings; None when nothing is known."""
        joins = self._by_sid.get(sid)
        return {room: str(offset) for room, offset in joins.items()} if joins else None

    def restore(self, sid: SocketId, offsets: dict[Room, str] | None) -> None:
        """Give the rooms `sid` is in back the offsets of its restored session (rooms it is not
        in are ignored; an unreadable map changes nothing)."""
        joins = self._by_sid.get(sid)
        parsed = parse_joins(offsets)
        if joins is None or parsed is None:
            return
        for room, offset in parsed.items():
            if room in joins:
                joins[room] = offset

    def clear(self) -> None:
        self._by_sid.clear()

    def __len__(self) -> int:
        return len(self._by_sid)


class RoomIndex:
    """Rooms <-> local socket ids, with room events and (optionally) join offsets.

    `rooms` and `sids` are plain dicts the owning adapter exposes as `adapter.rooms` /
    `adapter.sids`; `joins` is None when connection state recovery is off.
    """

    __slots__ = ("nsp", "rooms", "sids", "joins", "_listeners", "_tasks")

    def __init__(self, nsp: NamespaceLike, track_joins: bool) -> None:
        self.nsp = nsp
        self.rooms: dict[Room, set[SocketId]] = {}
        self.sids: dict[SocketId, set[Room]] = {}
        self.joins: JoinOffsets | None = JoinOffsets() if track_joins else None
        self._listeners: dict[str, list[RoomListener]] = {}
        self._tasks = TaskSet(logger)  # async room listeners still running

    # room events -------------------------------------------------------------------------
    def on(self, event: str, handler: RoomListener) -> RoomListener:
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
                    self._tasks.spawn(result, f"{event} listener")
            except Exception:  # a listener bug must not break room bookkeeping
                logger.exception("error in %s listener", event)

    # membership --------------------------------------------------------------------------
    def add_all(self, sid: SocketId, rooms: Iterable[Room], head: int = 0) -> None:
        """`sid` joins `rooms`; with join tracking, new rooms get join offset `head`."""
        if self.joins is not None:
            rooms = list(rooms)
            self.joins.joined(sid, rooms, head)
        own = self.sids.get(sid)
        if own is None:
            own = self.sids[sid] = set()
        listening = bool(self._listeners)
        for room in rooms:
            own.add(room)
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
        if self.joins is not None:
            self.joins.left(sid, room)
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
        if self.joins is not None:
            self.joins.forget(sid)
        own = self.sids.pop(sid, None)
        if own is None:
            return
        for room in own:
            self._del(room, sid)

    # lookups -----------------------------------------------------------------------------
    def recipients(self, opts: BroadcastOptions) -> Iterable[SocketId]:
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

    def local_sockets(self, opts: BroadcastOptions) -> list[Any]:
        """The namespace's local `Socket` objects matching `opts`."""
        found = []
        local_socket = self.nsp.local_socket
        for sid in self.recipients(opts):
            socket = local_socket(sid)
            if socket is not None:
                found.append(socket)
        return found

    # local socket operations (what every adapter does for the sockets of this process) --
    def join_sockets(self, opts: BroadcastOptions, rooms: list[Room]) -> None:
        for socket in self.local_sockets(opts):
            socket.join(rooms)

    def leave_sockets(self, opts: BroadcastOptions, rooms: list[Room]) -> None:
        for socket in self.local_sockets(opts):
            for room in rooms:
                socket.leave(room)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        for socket in self.local_sockets(opts):
            socket.disconnect(close)

    def clear(self) -> None:
        if self.joins is not None:
            self.joins.clear()
