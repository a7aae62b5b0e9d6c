"""A client's connection to one namespace: events in, emits and acks out, rooms, disconnect."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from siopg._log import clip
from siopg.adapter.base import BroadcastFlags, BroadcastOptions, RestoredSession, Session
from siopg.names import RESERVED_EVENTS, check_event_name, check_name, is_valid_name
from siopg.parser import Packet, PacketType
from siopg.server.broadcast import NO_FLAGS, BroadcastOperator, with_flags
from siopg.server.callbacks import Callback, PendingAck, remove
from siopg.server.errors import AckTimeoutError
from siopg.server.middleware import run_middlewares
from siopg.server.options import RECOVERABLE_REASONS
from siopg.server.tasks import DONE, Done

if TYPE_CHECKING:  # pragma: no cover
    from siopg.server.client import Client
    from siopg.server.namespace import Namespace

logger = logging.getLogger("siopg.server")



def new_id() -> str:
    """20 random url-safe characters (never the Engine.IO sid, which is sensitive)."""
    return secrets.token_urlsafe(15)


@dataclass(slots=True)
class Handshake:
    """What the client sent when it joined the namespace (socket.io's `socket.handshake`)."""

    headers: dict[str, str]
    query: dict[str, str]
    auth: dict[str, Any]
    address: str | None
    time: str
    issued: int
    url: str
    secure: bool
    xdomain: bool = field(default=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "headers": self.headers,
            "query": self.query,
            "auth": self.auth,
            "address": self.address,
            "time": self.time,
            "issued": self.issued,
            "url": self.url,
            "secure": self.secure,
            "xdomain": self.xdomain,
        }


_last_date: tuple[int, str] = (-1, "")


def _date_string(second: int) -> str:
    """JavaScript's `new Date() + ""` in UTC, formatted once per second (a ramp-up makes
    hundreds of handshakes per second; they share the string)."""
    global _last_date
    cached_second, text = _last_date
    if cached_second != second:
        text = time.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", time.gmtime(second))
        _last_date = (second, text)
    return text


def build_handshake(request: Any, auth: dict[str, Any]) -> Handshake:
    # The request's own dicts (as socket.io shares engine.io's request.headers): one copy per
    # connection, not one per connection and namespace.
    headers = getattr(request, "headers", None)
    if not isinstance(headers, dict):
        headers = dict(headers or {})
    query = getattr(request, "query", None)
    if not isinstance(query, dict):
        query = dict(query or {})
    now = time.time()
    return Handshake(
        headers=headers,
        query=query,
        auth=auth,
        address=getattr(request, "remote_address", None),
        time=_date_string(int(now)),
        issued=int(now * 1000),
        url=getattr(request, "url", "") or "",
        secure=bool(getattr(request, "secure", False)),
        xdomain="origin" in headers,
    )


# "<event> handler", the log label of each handler: one string per event name, not one per
# registration (apps register their handlers on every connecting socket). Bounded.
_labels: dict[str, str] = {}


def _handler_label(event: str) -> str:
    label = _labels.get(event)
    if label is None:
        label = f"{clip(str(event), 60)} handler"
        if len(_labels) < 1024:
            _labels[event] = label
    return label


def _ack_value(args: tuple[Any, ...]) -> Any:
    """A single ack argument as-is, several as a list, none as None."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return list(args)


class Socket:
    """One client in one namespace. Created by the namespace; use it in handlers."""

    def __init__(
        self,
        nsp: Namespace,
        client: Client,
        auth: dict[str, Any],
        restored: RestoredSession | None = None,
        client_offset: str | None = None,
    ) -> None:
        self.nsp = nsp
        self.client = client
        self.server = nsp.server
        self.adapter = nsp.adapter
        self.data: Any = {}
        self.connected = False
        self.recovered = False
        # why this socket's recovery failed ("unknown_session", "expired", "offset_pruned",
        # "offset_invalid", "limit", "unavailable", "error"); None: recovered, or not asked for
        self.recovery_failure: str | None = None
        self.acks: dict[int, PendingAck] = {}
        self.handshake = build_handshake(client.conn.request, auth)
        self._send = client.conn.send  # bound once: the broadcast loop calls it per recipient
        self._handlers: dict[str, list[Callback]] = {}
        self._any: list[Callback] = []
        self._any_outgoing: list[Callback] = []
        self._fns: list[Callback] = []
        self._pending: list[Any] | None = None  # deliveries held until the CONNECT reply is out
        self._missed: Sequence[Packet] = ()
        self._detached = False
        self._persisting: asyncio.Future[Any] | None = None
        self._persisted_early = False
        self._joining_allowed = True  # False once cleaned up: a late join must not resurrect rooms
        recovery = nsp.recovery
        if restored is not None:
            self.id = restored.sid
            self.pid: str | None = restored.pid
            self.data = restored.data
            self._missed = restored.missed_packets
            self.recovered = True
            if self._missed:
                self._offset_base = self._missed[-1].data[-1]
            elif client_offset is not None:
                self._offset_base = client_offset
            else:
                self._offset_base = self.adapter.current_offset()
            self.adapter.add_all(self.id, restored.rooms)
            if restored.join_offsets:
                # restored rooms keep their original join offsets: a later replay still holds
                # nothing from before the socket joined them
                restore = getattr(self.adapter, "restore_join_offsets", None)
                if restore is not None:
                    restore(self.id, restored.join_offsets)
        else:
            self.id = new_id()
            self.pid = new_id() if recovery is not None else None
            self._offset_base = self.adapter.current_offset() if recovery is not None else None

    # info --------------------------------------------------------------------------------
    @property
    def recovery_offset(self) -> str | None:
        """The log offset this socket's session resumes from if it is recovered (None: CSR off).

        `Session.offset` at persist time; adapters that snapshot sessions themselves (the
        Postgres adapter) read it here.
        """
        return self._offset_base

    @property
    def conn(self) -> Any:
        """The Engine.IO connection (EngineSocket) this socket rides on."""
        return self.client.conn

    @property
    def rooms(self) -> set[str]:
        rooms = self.adapter.socket_rooms(self.id)
        return set(rooms) if rooms else set()

    @property
    def disconnected(self) -> bool:
        return not self.connected

    def describe(self) -> dict[str, Any]:
        """The JSON-able details a cluster adapter sends for fetch_sockets (see RemoteSocket)."""
        return {"id": self.id, "handshake": self.handshake.to_dict(), "rooms": sorted(self.rooms), "data": self.data}

    def __repr__(self) -> str:
        return f"<Socket {self.id} nsp={self.nsp.name!r} connected={self.connected}>"

    # listeners ---------------------------------------------------------------------------
    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Register an event handler; usable as `@socket.on("ev")` or `socket.on("ev", fn)`."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers.setdefault(event, []).append(Callback(fn, _handler_label(event)))
            return fn

        return register(handler) if handler is not None else register

    def off(self, event: str, handler: Callable[..., Any] | None = None) -> None:
        if handler is None:
            self._handlers.pop(event, None)
        elif event in self._handlers:
            remove(self._handlers[event], handler)

    def on_any(self, listener: Callable[..., Any]) -> Callable[..., Any]:
        self._any.append(Callback(listener, "on_any listener"))
        return listener

    def off_any(self, listener: Callable[..., Any] | None = None) -> None:
        remove(self._any, listener)

    def on_any_outgoing(self, listener: Callable[..., Any]) -> Callable[..., Any]:
        callback = Callback(listener, "on_any_outgoing listener")
        if not self._any_outgoing:
            self.nsp._watchers += 1
        self._any_outgoing.append(callback)
        return listener

    def off_any_outgoing(self, listener: Callable[..., Any] | None = None) -> None:
        had = bool(self._any_outgoing)
        remove(self._any_outgoing, listener)
        if had and not self._any_outgoing:
            self.nsp._watchers -= 1

    def use(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Per-socket middleware `fn(packet, next_)`: packet is [event, *args]; next_(err) refuses."""
        self._fns.append(Callback(fn, "middleware"))
        return fn

    def _emit_reserved(self, event: str, *args: Any) -> None:
        tasks = self.server._tasks
        for callback in list(self._handlers.get(event, ())):
            callback.fire(tasks, args, trim=True)

    # emitting ----------------------------------------------------------------------------
    def emit(self, event: str, *args: Any, callback: Callable[..., Any] | None = None) -> Done:
        """Send an event to this client. Eager: the packet is queued before this returns.

        With `callback`, it is called with the client's ack arguments (after an error argument,
        None or AckTimeoutError, when a timeout is set).
        """
        return self._emit(event, args, NO_FLAGS, callback)

    def send(self, *args: Any) -> Done:
        return self.emit("message", *args)

    def emit_with_ack(self, event: str, *args: Any) -> asyncio.Future[Any]:
        return self._emit_with_ack(event, args, NO_FLAGS)

    def _emit(
        self,
        event: str,
        args: tuple[Any, ...],
        flags: BroadcastFlags,
        callback: Callable[..., Any] | PendingAck | None,
    ) -> Done:
        """Emit with `flags`; `callback` is the application's (or emit_with_ack's PendingAck)."""
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        check_event_name(event, self.server.max_event_name_length)
        if not self.connected and self._pending is None:
            return DONE  # never raises for a closed socket
        packet = Packet(PacketType.EVENT, self.nsp.name, [event, *args], None)
        if callback is not None:
            if not isinstance(callback, PendingAck):
                callback = PendingAck.for_user(callback, timed=flags.timeout is not None)
            packet.id = self.nsp._next_ack_id()
            self._register_ack(packet.id, callback, flags.timeout)
        if flags.volatile and not self.client.conn.writable:
            return DONE  # like socket.io: dropped, not queued (an ack then times out)
        if self.nsp.recovery is not None and packet.id is None and not flags.volatile:
            # through the adapter, so the packet gets an offset and is kept for recovery
            self.adapter.broadcast(packet, BroadcastOptions(rooms=frozenset((self.id,)), flags=flags))
        else:
            if self._any_outgoing:
                self._notify_outgoing(packet.data)
            self.client._packet(packet, flags.compress)
        return DONE

    def _emit_with_ack(self, event: str, args: tuple[Any, ...], flags: BroadcastFlags) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.connected and self._pending is None:
            fut.set_exception(AckTimeoutError("socket has been disconnected"))
            return fut

        def fail(err: BaseException) -> None:
            if not fut.done():
                fut.set_exception(err)

        def settle(*ack_args: Any) -> None:
            if not fut.done():
                fut.set_result(_ack_value(ack_args))

        # a timeout or a disconnection fails the future
        pending = PendingAck(Callback(settle, "emit_with_ack"), Callback(fail, "emit_with_ack"))
        self._emit(event, args, flags, pending)
        return fut

    def _register_ack(self, ack_id: int, pending: PendingAck, timeout: float | None) -> None:
        self.acks[ack_id] = pending
        if timeout is None:
            return

        def expire() -> None:
            if self.acks.pop(ack_id, None) is pending:
                self.server.metrics.acks_timed_out += 1
                pending.fail(self.server._tasks, AckTimeoutError())

        pending.timer = asyncio.get_running_loop().call_later(timeout, expire)

    def _notify_outgoing(self, data: list[Any]) -> None:
        tasks = self.server._tasks
        for callback in list(self._any_outgoing):
            callback.fire(tasks, data)

    def timeout(self, seconds: float) -> FlaggedSocket:
        return FlaggedSocket(self, NO_FLAGS)._with(timeout=seconds)

    @property
    def volatile(self) -> FlaggedSocket:
        return FlaggedSocket(self, NO_FLAGS)._with(volatile=True)

    def compress(self, compress: bool) -> FlaggedSocket:
        """compress(False): with per_message_deflate on, send uncompressed (see BroadcastOperator)."""
        return FlaggedSocket(self, NO_FLAGS)._with(compress=compress)

    # broadcasting from this socket (everyone but itself) --------------------------------------
    def _operator(self, flags: BroadcastFlags = NO_FLAGS) -> BroadcastOperator:
        return BroadcastOperator(self.nsp, frozenset(), frozenset((self.id,)), flags)

    @property
    def broadcast(self) -> BroadcastOperator:
        return self._operator()

    @property
    def local(self) -> BroadcastOperator:
        return self._operator().local

    def to(self, room: str | list[str]) -> BroadcastOperator:
        return self._operator().to(room)

    in_ = to

    def except_(self, room: str | list[str]) -> BroadcastOperator:
        return self._operator().except_(room)

    # rooms -------------------------------------------------------------------------------
    def join(self, rooms: str | list[str]) -> None:
        """Join one room or several; ValueError (and no room joined) if a name is invalid:
        not a string, over the server's `max_room_length` UTF-8 bytes, NUL or lone surrogate."""
        names = [rooms] if isinstance(rooms, str) else list(rooms)
        limit = self.server.max_room_length
        for room in names:
            check_name(room, "room", limit)
        if not self._joining_allowed:
            return
        self.adapter.add_all(self.id, names)

    def leave(self, room: str) -> None:
        check_name(room, "room", self.server.max_room_length)
        if self._detached:
            return
        self.adapter.delete(self.id, room)

    # incoming ----------------------------------------------------------------------------
    def _on_packet(self, packet: Packet) -> None:
        ptype = packet.type
        if ptype == PacketType.EVENT or ptype == PacketType.BINARY_EVENT:
            self._on_event(packet)
        elif ptype == PacketType.ACK or ptype == PacketType.BINARY_ACK:
            pending = self.acks.pop(packet.id, None) if packet.id is not None else None
            if pending is not None:
                self.server.metrics.acks_answered += 1
                pending.answer(self.server._tasks, packet.data if isinstance(packet.data, list) else ())
        elif ptype == PacketType.DISCONNECT:
            self._on_close("client namespace disconnect")

    def _on_event(self, packet: Packet) -> None:
        data = packet.data
        if not isinstance(data, list) or not data or not isinstance(data[0], (str, int)):
            return  # the parser validates this; be defensive anyway
        if isinstance(data[0], str) and not is_valid_name(data[0], self.server.max_event_name_length):
            # an event name siopg cannot carry: a malformed packet, as for the parser's checks
            self.server.metrics.invalid_names += 1
            logger.debug("invalid event name %s from %s: closing", clip(data[0]), self.client.id)
            self.client._close("parse error")
            return
        self.server.metrics.packets_in += 1
        ack = self._make_ack(packet.id) if packet.id is not None else None
        if self._any:
            tasks = self.server._tasks
            for callback in list(self._any):
                callback.fire(tasks, data, ack)
        if self._fns:
            self.server._tasks.spawn(self._run_then_dispatch(data, ack), "socket middleware")
        else:
            self._dispatch(data, ack)

    async def _run_then_dispatch(self, data: list[Any], ack: Callable[..., None] | None) -> None:
        err = await run_middlewares(self._fns, data)
        if err is not None:
            self._emit_reserved("error", err)
            return
        if self.connected:
            self._dispatch(data, ack)

    def _dispatch(self, data: list[Any], ack: Callable[..., None] | None) -> None:
        event = data[0]
        handlers = self._handlers.get(event)
        if not handlers:
            return
        args = data[1:]
        tasks = self.server._tasks
        for callback in list(handlers):
            callback.fire(tasks, args, ack)

    def _make_ack(self, ack_id: int) -> Callable[..., None]:
        sent = False

        def ack(*args: Any) -> None:
            nonlocal sent
            if sent:
                return
            sent = True
            self.client._packet(Packet(PacketType.ACK, self.nsp.name, list(args), ack_id))

        return ack

    # lifecycle ---------------------------------------------------------------------------
    def _on_connect(self) -> None:
        """Called by the namespace once middlewares passed: join the own room, send CONNECT."""
        self.connected = True
        self.adapter.add_all(self.id, [self.id])
        reply: dict[str, Any] = {"sid": self.id}
        if self.pid is not None:
            reply["pid"] = self.pid
        self.client._packet(Packet(PacketType.CONNECT, self.nsp.name, reply, None))
        self.client._flush()  # the reply leaves now; events emitted from here on follow it
        if self._missed:
            self.server.metrics.packets_replayed += len(self._missed)
            self.client._send_packets(self._missed)
            self._missed = ()
        pending, self._pending = self._pending, None
        if pending:
            send = self.client.conn.send
            for messages in pending:
                send(messages)

    def _on_close(self, reason: str, description: Any = None) -> None:
        """The socket leaves its namespace (client gone, kicked, or server closing)."""
        if not self.connected:
            return
        self.server.metrics.disconnected(reason)
        self._emit_reserved("disconnecting", reason, description)
        current = self.nsp.sockets.get(self.id) is self
        if (
            current
            and self.nsp.recovery is not None
            and reason in RECOVERABLE_REASONS
            and self.pid
            and not self._persisted_early
        ):
            self._persisting = self.server._tasks.spawn(
                self.adapter.persist_session(self._session()), "persist session"
            )
            self.server.metrics.sessions_persisted += 1
        self._cleanup()
        self.client._remove(self)
        self.connected = False
        self._fail_pending_acks()
        self._emit_reserved("disconnect", reason, description)

    def _session(self) -> Session:
        join_offsets = getattr(self.adapter, "join_offsets", None)
        return Session(
            sid=self.id,
            pid=self.pid or "",
            namespace=self.nsp.name,
            rooms=list(self.rooms),
            data=self.data,
            offset=self._offset_base,
            join_offsets=join_offsets(self.id) if join_offsets is not None else None,
        )

    async def _persist_before_shutdown(self) -> None:
        """Persist now, before the client is told to go: it may reconnect to another server at
        once, and its session must already be there (server shutting down)."""
        if not self.connected or not self.pid or self.nsp.recovery is None:
            return
        self._persisted_early = True
        self.server.metrics.sessions_persisted += 1
        await self.adapter.persist_session(self._session())

    def _cleanup(self) -> None:
        """Leave every room and the namespace, unless a newer socket took over this id."""
        self._joining_allowed = False
        self._pending = None
        self.off_any_outgoing()
        if self._detached:
            return
        if self.nsp.sockets.get(self.id) in (None, self):
            self.adapter.delete_all(self.id)
        self.nsp._remove(self)

    def _detach(self) -> None:
        """Quietly give this id up to a restored socket (socket.io#4880): no events, no persist."""
        self._detached = True
        self.off_any_outgoing()
        self.connected = False
        self._pending = None
        self._joining_allowed = False
        self.client._remove(self)
        self._fail_pending_acks()

    def _fail_pending_acks(self) -> None:
        acks, self.acks = self.acks, {}
        tasks = self.server._tasks
        for pending in acks.values():  # emit_with_ack futures and timed callbacks get an error
            pending.fail(tasks, AckTimeoutError("socket has been disconnected"))

    def disconnect(self, close: bool = False) -> Done:
        """Leave the namespace ("server namespace disconnect"); `close` also closes the connection."""
        if not self.connected:
            return DONE
        if close:
            self.client._disconnect()
        else:
            self.client._packet(Packet(PacketType.DISCONNECT, self.nsp.name, None, None))
            self._on_close("server namespace disconnect")
        return DONE


class FlaggedSocket:
    """`socket.timeout(..)`, `.volatile`, `.compress(..)`: the socket with per-emit flags."""

    __slots__ = ("_socket", "_flags")

    def __init__(self, socket: Socket, flags: BroadcastFlags) -> None:
        self._socket = socket
        self._flags = flags

    def _with(self, **changes: Any) -> FlaggedSocket:
        return FlaggedSocket(self._socket, with_flags(self._flags, **changes))

    def timeout(self, seconds: float) -> FlaggedSocket:
        return self._with(timeout=seconds)

    @property
    def volatile(self) -> FlaggedSocket:
        return self._with(volatile=True)

    def compress(self, compress: bool) -> FlaggedSocket:
        return self._with(compress=compress)

    def emit(self, event: str, *args: Any, callback: Callable[..., Any] | None = None) -> Done:
        return self._socket._emit(event, args, self._flags, callback)

    def emit_with_ack(self, event: str, *args: Any) -> asyncio.Future[Any]:
        return self._socket._emit_with_ack(event, args, self._flags)

    @property
    def broadcast(self) -> BroadcastOperator:
        return self._socket._operator(self._flags)

    def to(self, room: str | list[str]) -> BroadcastOperator:
        return self._socket._operator(self._flags).to(room)

    in_ = to

    def except_(self, room: str | list[str]) -> BroadcastOperator:
        return self._socket._operator(self._flags).except_(room)
