"""RemoteSocket: a socket of another server (from fetch_sockets), driven through the adapter."""

from __future__ import annotations

from typing import Any, Iterable

from siopg.adapter.base import BroadcastFlags, BroadcastOptions
from siopg.server.broadcast import BroadcastOperator, _rooms
from siopg.server.tasks import DONE, Done


class RemoteSocket:
    """What a cluster adapter reports about a socket elsewhere: id, handshake, rooms, data.

    Adapters build it with `RemoteSocket(nsp, details)` where details is
    `{"id", "handshake", "rooms", "data"}` (the shape `Socket` serialises to with `describe()`).
    """

    __slots__ = ("nsp", "id", "handshake", "rooms", "data", "_flags")

    def __init__(self, nsp: Any, details: dict[str, Any], flags: BroadcastFlags | None = None) -> None:
        self.nsp = nsp
        self.id: str = details["id"]
        self.handshake: dict[str, Any] = details.get("handshake") or {}
        self.rooms: set[str] = set(details.get("rooms") or ())
        self.data: Any = details.get("data")
        self._flags = flags or BroadcastFlags()

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id} nsp={getattr(self.nsp, 'name', '?')!r}>"

    def _operator(self) -> BroadcastOperator:
        return BroadcastOperator(self.nsp, frozenset((self.id,)), frozenset(), self._flags, single=True)

    def timeout(self, seconds: float) -> "RemoteSocket":
        copy = RemoteSocket(self.nsp, {"id": self.id, "handshake": self.handshake, "rooms": self.rooms, "data": self.data})
        copy._flags = BroadcastFlags(timeout=seconds)
        return copy

    def emit(self, event: str, *args: Any) -> Done:
        return self._operator().emit(event, *args)

    def emit_with_ack(self, event: str, *args: Any) -> Any:
        """The remote client's first ack argument (raises AckTimeoutError after the timeout)."""
        return self._operator().emit_with_ack(event, *args)

    def _opts(self) -> BroadcastOptions:
        return BroadcastOptions(rooms=frozenset((self.id,)))

    def join(self, room: str | Iterable[str]) -> Done:
        self.nsp.adapter.add_sockets(self._opts(), sorted(_rooms(room, self.nsp.server.max_room_length)))
        return DONE

    def leave(self, room: str | Iterable[str]) -> Done:
        self.nsp.adapter.del_sockets(self._opts(), sorted(_rooms(room, self.nsp.server.max_room_length)))
        return DONE

    def disconnect(self, close: bool = False) -> Done:
        self.nsp.adapter.disconnect_sockets(self._opts(), close)
        return DONE
