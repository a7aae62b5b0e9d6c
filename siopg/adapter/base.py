"""The adapter interface: how a namespace finds recipients, across one process or a cluster.

One adapter instance serves one namespace. The server layer calls only what is defined here,
so an adapter author reads this file and nothing else of the server. Shapes follow
socket.io-adapter 2.5 (names made Pythonic); every method that may cross processes is async
or takes callbacks.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from siopg.adapter.errors import (
    RecoveryUnavailable as RecoveryUnavailable,  # re-exported (its old home)
)

if TYPE_CHECKING:  # pragma: no cover
    from siopg.parser.packet import Packet

SocketId = str
Room = str


@dataclass(slots=True, frozen=True)
class BroadcastFlags:
    """Per-emit modifiers. `timeout` is in seconds (socket.io uses ms; we use Python's unit)."""

    volatile: bool = False
    compress: bool | None = None
    local: bool = False
    timeout: float | None = None


@dataclass(slots=True, frozen=True)
class BroadcastOptions:
    """Who receives a packet: sockets in any of `rooms` (all sockets if empty), minus `except_`."""

    rooms: frozenset[Room] = frozenset()
    except_: frozenset[Room] = frozenset()
    flags: BroadcastFlags = field(default_factory=BroadcastFlags)


@dataclass(slots=True)
class SocketDetails:
    """A socket of another server, as `fetch_sockets` reports it (socket.io's SocketDetails).

    Plain data: the server layer wraps it in a `RemoteSocket` (as socket.io's
    broadcast-operator does), so no adapter needs to know the server's classes.
    """

    id: SocketId
    handshake: dict[str, Any]
    rooms: set[Room]
    data: Any

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> SocketDetails:
        """Build from what another server sent (`Socket.describe()`); raises on a bad shape."""
        sid = raw["id"]
        if not isinstance(sid, str):
            raise ValueError("a socket id must be a string")
        handshake = raw.get("handshake")
        return cls(sid, handshake if isinstance(handshake, dict) else {}, set(raw.get("rooms") or ()), raw.get("data"))


@dataclass(slots=True)
class Session:
    """What connection state recovery keeps of a disconnected socket.

    `offset` is the last log offset the socket was known to have (the client's offset when it
    reconnects; at persist time, the log head when the socket was created or last delivered to,
    so recovery works even before the client received any event).
    """

    sid: SocketId
    pid: str
    namespace: str
    rooms: list[Room]
    data: Any
    offset: str | None = None
    # room -> the log offset current when the socket joined it (its own room's: the session
    # start); a replay never includes a packet to a room from before the join. Optional: an
    # adapter that does not track joins leaves it None (no filtering by join).
    join_offsets: dict[Room, str] | None = None


@dataclass(slots=True)
class RestoredSession:
    """A session found by `restore_session`, with the packets the client missed, in order.

    Each missed packet is an EVENT whose data already ends with its offset (a string).
    """

    sid: SocketId
    pid: str
    rooms: list[Room]
    data: Any
    missed_packets: list[Packet]
    join_offsets: dict[Room, str] | None = None  # kept by the restored socket (see Session)


class NamespaceLike(Protocol):
    """What an adapter may use of its namespace (kept tiny on purpose)."""

    name: str
    recovery: Any  # the server's `Recovery` options (has `max_disconnection_duration`), or None: CSR off

    def deliver(self, packet: Packet, socket_ids: Iterable[SocketId], flags: BroadcastFlags) -> None:
        """Encode `packet` once per parser and queue it on each listed local socket."""

    def deliver_with_ack(
        self,
        packet: Packet,
        socket_ids: Iterable[SocketId],
        flags: BroadcastFlags,
        ack: Callable[[Any], None],
    ) -> int:
        """Like deliver, but each socket gets its own ack id; `ack(response)` is called per answer.

        Returns how many sockets the packet was sent to.
        """

    def forget_broadcast_acks(self, ack: Callable[[Any], None]) -> None:
        """Drop the per-socket ack slots `deliver_with_ack(..., ack)` registered.

        An adapter answering another server's broadcast-with-ack calls it once the requester
        has stopped waiting (its timeout passed), so the slots do not outlive the request.
        """

    def local_socket(self, sid: SocketId) -> Any | None:
        """The local `Socket` with this id, or None.

        Adapters may read its `id`, `pid`, `data`, `rooms`, `handshake`, `describe()` (what
        another server learns of it) and `recovery_offset` (the offset its session resumes
        from, i.e. `Session.offset`).
        """

    def on_server_side_emit(self, args: list[Any], ack: Callable[[Any], None] | None) -> None:
        """Run the namespace's `serverSideEmit` listeners for a message from another server."""


class Adapter(abc.ABC):
    """Rooms index plus delivery. Subclass `InMemoryAdapter` for most custom adapters."""

    def __init__(self, nsp: NamespaceLike) -> None:
        self.nsp = nsp
        self.rooms: dict[Room, set[SocketId]] = {}
        self.sids: dict[SocketId, set[Room]] = {}

    # lifecycle -------------------------------------------------------------------------
    async def init(self) -> None:
        """Called once when the namespace is created, before any socket joins."""

    async def close(self) -> None:
        """Release everything (tasks, timers, connections). Called by `Server.close()`."""

    # rooms (local state) ---------------------------------------------------------------
    @abc.abstractmethod
    def add_all(self, sid: SocketId, rooms: Iterable[Room]) -> None: ...

    @abc.abstractmethod
    def delete(self, sid: SocketId, room: Room) -> None: ...

    @abc.abstractmethod
    def delete_all(self, sid: SocketId) -> None: ...

    def socket_rooms(self, sid: SocketId) -> set[Room] | None:
        return self.sids.get(sid)

    # delivery --------------------------------------------------------------------------
    @abc.abstractmethod
    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        """Deliver to every matching socket in the cluster (only local ones if flags.local)."""

    @abc.abstractmethod
    def broadcast_with_ack(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count_callback: Callable[[int], None],
        ack: Callable[[Any], None],
    ) -> None:
        """Deliver expecting one answer per client.

        `client_count_callback(n)` is called once per server that took part (so the caller can
        add up how many answers to wait for) and `ack(response)` once per client answer.
        """

    @abc.abstractmethod
    async def server_count(self) -> int: ...

    # cluster-wide socket operations ----------------------------------------------------
    @abc.abstractmethod
    async def sockets(self, rooms: frozenset[Room]) -> set[SocketId]:
        """Ids of local sockets in any of `rooms` (all local sockets if empty)."""

    @abc.abstractmethod
    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Any]:
        """Local `Socket`s plus a `SocketDetails` for each matching socket of other servers
        (the server wraps those in `RemoteSocket`)."""

    @abc.abstractmethod
    def add_sockets(self, opts: BroadcastOptions, rooms: list[Room]) -> None: ...

    @abc.abstractmethod
    def del_sockets(self, opts: BroadcastOptions, rooms: list[Room]) -> None: ...

    @abc.abstractmethod
    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None: ...

    @abc.abstractmethod
    def server_side_emit(self, args: list[Any], ack: Callable[[Any], None] | None = None) -> None:
        """Send `args` (event name first) to the other servers' namespace listeners.

        With `ack`, it is called once with the list of every other server's answer (or raises
        via the namespace's timeout handling)."""

    # connection state recovery ---------------------------------------------------------
    @property
    def supports_recovery(self) -> bool:
        return False

    async def persist_session(self, session: Session) -> None:
        """Keep `session` for the recovery window (no-op when recovery is unsupported)."""

    async def restore_session(self, pid: str, offset: str | None) -> RestoredSession | None:
        """The session and the packets it missed after `offset`.

        No session (the client gets a fresh one): raise `RecoveryRefused(cause)` (the cause is
        what `socket.recovery_failure` and the `recovery_failed_<cause>` counters say; see
        siopg.adapter.errors.RECOVERY_CAUSES), or return None (counted as "unknown_session").
        Raises `RecoveryUnavailable` when the answer cannot be known now (store unreachable).
        """
        return None

    def current_offset(self) -> str | None:
        """The newest offset this adapter has handed out (used when a socket connects)."""
        return None

    def join_offsets(self, sid: SocketId) -> dict[Room, str] | None:
        """Room -> log offset current when `sid` joined it (None: joins are not tracked)."""
        return None

    def restore_join_offsets(self, sid: SocketId, offsets: dict[Room, str]) -> None:
        """Give a restored socket's rooms back their original join offsets."""
