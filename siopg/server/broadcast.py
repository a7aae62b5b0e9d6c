"""BroadcastOperator: `io.to(..).except_(..).volatile.timeout(..).emit(..)` and friends.

Operators are immutable: every modifier returns a new one, so a half-built chain can be kept
and reused safely across awaits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from siopg.adapter.base import BroadcastFlags, BroadcastOptions, SocketDetails
from siopg.names import RESERVED_EVENTS, check_event_name, check_name
from siopg.parser import Packet, PacketType
from siopg.server.callbacks import Callback
from siopg.server.errors import AckTimeoutError
from siopg.server.tasks import DONE, Done

if TYPE_CHECKING:  # pragma: no cover
    from siopg.server.namespace import Namespace

logger = logging.getLogger("siopg.server")
NO_FLAGS = BroadcastFlags()


def with_flags(flags: BroadcastFlags, **changes: Any) -> BroadcastFlags:
    """`flags` with some modifiers changed: the one builder of per-emit flags (operators and
    flagged sockets alike), so a new flag is added in one place."""
    return dataclasses.replace(flags, **changes)


def _rooms(room: str | Iterable[str], max_bytes: int) -> frozenset[str]:
    """The room(s) as a frozenset; ValueError for a name siopg cannot carry (see siopg.names)."""
    if isinstance(room, str):
        return frozenset((check_name(room, "room", max_bytes),))
    rooms = frozenset(room)
    for name in rooms:
        check_name(name, "room", max_bytes)
    return rooms


class BroadcastOperator:
    """Targets a set of sockets (rooms minus excepted rooms) across the cluster."""

    __slots__ = ("nsp", "rooms", "except_rooms", "flags", "_single")

    def __init__(
        self,
        nsp: Namespace,
        rooms: frozenset[str] = frozenset(),
        except_rooms: frozenset[str] = frozenset(),
        flags: BroadcastFlags = NO_FLAGS,
        single: bool = False,
    ) -> None:
        self.nsp = nsp
        self.rooms = rooms
        self.except_rooms = except_rooms
        self.flags = flags
        self._single = single  # RemoteSocket acks: one answer, not a list

    @property
    def adapter(self) -> Any:
        return self.nsp.adapter

    # modifiers ---------------------------------------------------------------------------
    def to(self, room: str | Iterable[str]) -> BroadcastOperator:
        rooms = _rooms(room, self.nsp.server.max_room_length)
        return self.__class__(self.nsp, self.rooms | rooms, self.except_rooms, self.flags, self._single)

    in_ = to

    def except_(self, room: str | Iterable[str]) -> BroadcastOperator:
        rooms = _rooms(room, self.nsp.server.max_room_length)
        return self.__class__(self.nsp, self.rooms, self.except_rooms | rooms, self.flags, self._single)

    def _with(self, **changes: Any) -> BroadcastOperator:
        return self.__class__(self.nsp, self.rooms, self.except_rooms, with_flags(self.flags, **changes), self._single)

    @property
    def volatile(self) -> BroadcastOperator:
        return self._with(volatile=True)

    def compress(self, compress: bool) -> BroadcastOperator:
        """compress(False): with per_message_deflate on, send these frames uncompressed
        (they are compressed by default). Without per_message_deflate: no effect."""
        return self._with(compress=compress)

    @property
    def local(self) -> BroadcastOperator:
        return self._with(local=True)

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self._with(timeout=seconds)

    @property
    def _opts(self) -> BroadcastOptions:
        return BroadcastOptions(rooms=self.rooms, except_=self.except_rooms, flags=self.flags)

    # emitting ----------------------------------------------------------------------------
    def emit(self, event: str, *args: Any, callback: Callable[[Any, Any], Any] | None = None) -> Done:
        """Send to every targeted socket. Eager; the result may be awaited.

        With `callback(err, responses)`, each client's first ack argument is collected (like
        socket.io 4.8's `io.timeout(ms).emit(ev, cb)`); err is None or an AckTimeoutError.
        """
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        check_event_name(event, self.nsp.server.max_event_name_length)
        packet = Packet(PacketType.EVENT, self.nsp.name, [event, *args], None)
        if callback is None:
            self.nsp.server.metrics.broadcasts += 1
            self.adapter.broadcast(packet, self._opts)
        else:
            self._emit_with_ack(packet, callback)
        return DONE

    def send(self, *args: Any) -> Done:
        return self.emit("message", *args)

    def emit_with_ack(self, event: str, *args: Any) -> asyncio.Future[Any]:
        """Send and wait for every client's answer: a list (the first ack argument of each).

        Raises AckTimeoutError (with `.responses`, the partial answers) after the timeout.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(err: Any, responses: Any) -> None:
            if fut.done():
                return
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(responses)

        self.emit(event, *args, callback=settle)
        return fut

    def _emit_with_ack(self, packet: Packet, fn: Callable[[Any, Any], Any]) -> None:
        loop = asyncio.get_running_loop()
        nsp = self.nsp
        tasks = nsp.server._tasks
        callback = Callback(fn, "ack callback")
        single = self._single
        responses: list[Any] = []
        state = {"servers_expected": -1, "servers_seen": 0, "clients_expected": 0, "done": False}
        timer: asyncio.TimerHandle | None = None

        def finish(err: BaseException | None) -> None:
            state["done"] = True
            if timer is not None:
                timer.cancel()
            nsp._open_broadcasts.discard(on_close)
            nsp.forget_broadcast_acks(on_ack)
            result = (responses[0] if responses else None) if single else list(responses)
            callback.fire(tasks, (err, result))

        def check() -> None:
            if (
                not state["done"]
                and state["servers_expected"] == state["servers_seen"]
                and len(responses) >= state["clients_expected"]
            ):
                finish(None)

        def on_count(count: int) -> None:
            state["clients_expected"] += count
            state["servers_seen"] += 1
            check()

        def on_ack(response: Any) -> None:
            if state["done"]:
                return
            responses.append(response)
            check()

        def on_timeout() -> None:
            if not state["done"]:
                nsp.server.metrics.acks_timed_out += max(0, state["clients_expected"] - len(responses))
                finish(AckTimeoutError("operation has timed out", list(responses)))

        def on_close() -> None:  # the server is closing: no answer will come any more
            if not state["done"]:
                finish(AckTimeoutError("server closed", list(responses)))

        nsp._open_broadcasts.add(on_close)
        if self.flags.timeout is not None:
            timer = loop.call_later(self.flags.timeout, on_timeout)
        nsp.server.metrics.broadcasts += 1
        self.adapter.broadcast_with_ack(packet, self._opts, on_count, on_ack)
        if self.flags.local:
            state["servers_expected"] = 1
            check()
        else:
            count_task = tasks.spawn(self.adapter.server_count(), "broadcast server count")

            def counted(task: asyncio.Future[int]) -> None:
                if task.cancelled() or task.exception() is not None:
                    state["servers_expected"] = state["servers_seen"]  # best effort: who answered
                else:
                    state["servers_expected"] = task.result()
                check()

            count_task.add_done_callback(counted)

    async def server_side_emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """`io.timeout(t).server_side_emit_with_ack(..)`: every other server's answer."""
        return await self.nsp.server_side_emit_with_ack(event, *args, timeout=self.flags.timeout)

    # cluster-wide socket operations ------------------------------------------------------
    async def fetch_sockets(self) -> list[Any]:
        """Matching sockets: local `Socket`s and `RemoteSocket`s of other servers (the adapter
        reports those as plain `SocketDetails`; they are wrapped here, as socket.io does)."""
        found = await self.adapter.fetch_sockets(self._opts)
        return [RemoteSocket(self.nsp, s) if isinstance(s, SocketDetails) else s for s in found]

    def sockets_join(self, room: str | Iterable[str]) -> Done:
        self.adapter.add_sockets(self._opts, sorted(_rooms(room, self.nsp.server.max_room_length)))
        return DONE

    def sockets_leave(self, room: str | Iterable[str]) -> Done:
        self.adapter.del_sockets(self._opts, sorted(_rooms(room, self.nsp.server.max_room_length)))
        return DONE

    def disconnect_sockets(self, close: bool = False) -> Done:
        self.adapter.disconnect_sockets(self._opts, close)
        return DONE


class RemoteSocket:
    """A socket of another server (from fetch_sockets): id, handshake, rooms, data, and the
    operations that reach it through the adapter.

    Built by `BroadcastOperator.fetch_sockets` from the adapter's `SocketDetails` (a dict of the
    same keys, the shape `Socket.describe()` gives, is accepted too).
    """

    __slots__ = ("nsp", "id", "handshake", "rooms", "data", "_flags")

    def __init__(self, nsp: Any, details: SocketDetails | dict[str, Any], flags: BroadcastFlags | None = None) -> None:
        if not isinstance(details, SocketDetails):
            details = SocketDetails.from_wire(details)
        self.nsp = nsp
        self.id: str = details.id
        self.handshake: dict[str, Any] = details.handshake
        self.rooms: set[str] = set(details.rooms)
        self.data: Any = details.data
        self._flags = flags or BroadcastFlags()

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id} nsp={getattr(self.nsp, 'name', '?')!r}>"

    def _operator(self) -> BroadcastOperator:
        return BroadcastOperator(self.nsp, frozenset((self.id,)), frozenset(), self._flags, single=True)

    def timeout(self, seconds: float) -> RemoteSocket:
        details = SocketDetails(self.id, self.handshake, self.rooms, self.data)
        return RemoteSocket(self.nsp, details, BroadcastFlags(timeout=seconds))

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
