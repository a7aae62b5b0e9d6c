"""Namespaces: sockets, middlewares, connection handling, and delivery from the adapter.

`deliver()` is the broadcast hot path: encode once per parser, then hand the very same list
of OutgoingMessage objects to every recipient's engine connection.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from siopg._log import clip, no_session
from siopg.adapter.base import Adapter, BroadcastFlags, RecoveryUnavailable, Session, SocketId
from siopg.adapter.errors import ERROR, UNAVAILABLE, UNKNOWN_SESSION, RecoveryRefused
from siopg.engine.message import OutgoingMessage
from siopg.errors import SiopgError
from siopg.names import RESERVED_EVENTS, check_event_name
from siopg.parser import Packet, PacketType
from siopg.server.broadcast import BroadcastOperator
from siopg.server.callbacks import Callback, PendingAck, remove
from siopg.server.errors import AckTimeoutError
from siopg.server.middleware import connect_error_data, run_middlewares
from siopg.server.socket import Socket
from siopg.server.tasks import Done

if TYPE_CHECKING:  # pragma: no cover
    from siopg.server.client import Client
    from siopg.server.server import Server

logger = logging.getLogger("siopg.server")

NamespaceMatcher = re.Pattern[str] | Callable[[str, dict[str, Any]], Any]


class Namespace:
    """A communication channel ("/" by default) with its own sockets, rooms and handlers."""

    def __init__(self, server: Server, name: str, with_adapter: bool = True) -> None:
        self.server = server
        self.name = name
        self.recovery = server.recovery
        self.sockets: dict[SocketId, Socket] = {}
        self._preconnect: dict[SocketId, Socket] = {}  # restored sockets waiting for middlewares
        self._by_pid: dict[str, Socket] = {}  # connected sockets by private session id (CSR)
        self._fns: list[Callback] = []
        self._handlers: dict[str, list[Callback]] = {}
        self._ack_id = 0
        self._broadcast_acks: dict[Callable[..., Any], list[tuple[Socket, int]]] = {}
        self._open_broadcasts: set[Callable[[], None]] = set()  # broadcast acks awaiting answers
        self._watchers = 0  # sockets with on_any_outgoing listeners (they force the slow path)
        if with_adapter:  # a ParentNamespace has none: it matches names; each child has its own
            self.adapter: Adapter = server._make_adapter(self)
        self._ready: asyncio.Future[None] | None = None
        self._init_started = False
        self._parent: Any = None  # the ParentNamespace that created this one (dynamic namespaces)
        self._joining = 0  # CONNECTs being handled (middlewares, recovery): keeps a child alive

    def __repr__(self) -> str:
        return f"<Namespace {self.name!r} sockets={len(self.sockets)}>"

    # setup -------------------------------------------------------------------------------
    def _start_init(self) -> asyncio.Future[None]:
        """Run `adapter.init()` once (needs a running loop); connections wait for it."""
        if self._ready is None:
            self._ready = asyncio.ensure_future(self.adapter.init())
            self._ready.add_done_callback(_log_failure)
        return self._ready

    async def _ensure_ready(self) -> None:
        await self._start_init()

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """`@nsp.on("connection")` (socket) or a server-side-emit event name."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            name = "connection" if event == "connect" else event
            what = "connection handler" if name == "connection" else f"server-side {clip(str(name), 60)} handler"
            self._handlers.setdefault(name, []).append(Callback(fn, what))
            return fn

        return register(handler) if handler is not None else register

    def off(self, event: str, handler: Callable[..., Any] | None = None) -> None:
        name = "connection" if event == "connect" else event
        if handler is None:
            self._handlers.pop(name, None)
        elif name in self._handlers:
            remove(self._handlers[name], handler)

    def use(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a connection middleware `fn(socket, next_)` (sync or async)."""
        self._fns.append(Callback(fn, "middleware"))
        return fn

    # operators ---------------------------------------------------------------------------
    def _operator(self) -> BroadcastOperator:
        return BroadcastOperator(self)

    def to(self, room: str | Iterable[str]) -> BroadcastOperator:
        return self._operator().to(room)

    in_ = to

    def except_(self, room: str | Iterable[str]) -> BroadcastOperator:
        return self._operator().except_(room)

    @property
    def volatile(self) -> BroadcastOperator:
        return self._operator().volatile

    def compress(self, compress: bool) -> BroadcastOperator:
        return self._operator().compress(compress)

    @property
    def local(self) -> BroadcastOperator:
        return self._operator().local

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self._operator().timeout(seconds)

    def emit(self, event: str, *args: Any, callback: Callable[[Any, Any], Any] | None = None) -> Done:
        return self._operator().emit(event, *args, callback=callback)

    def send(self, *args: Any) -> Done:
        return self.emit("message", *args)

    def emit_with_ack(self, event: str, *args: Any) -> asyncio.Future[Any]:
        return self._operator().emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Any]:
        return await self._operator().fetch_sockets()

    def sockets_join(self, room: str | Iterable[str]) -> Done:
        return self._operator().sockets_join(room)

    def sockets_leave(self, room: str | Iterable[str]) -> Done:
        return self._operator().sockets_leave(room)

    def disconnect_sockets(self, close: bool = False) -> Done:
        return self._operator().disconnect_sockets(close)

    async def server_count(self) -> int:
        return await self.adapter.server_count()

    def server_side_emit(self, event: str, *args: Any) -> None:
        """Send to the namespace listeners of the other servers (not this one)."""
        if event in RESERVED_EVENTS or event == "connection":
            raise ValueError(f'"{event}" is a reserved event name')
        check_event_name(event, self.server.max_event_name_length)
        self.adapter.server_side_emit([event, *args])

    async def server_side_emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> list[Any]:
        """Like server_side_emit; returns every other server's answer (raises AckTimeoutError)."""
        if event in RESERVED_EVENTS or event == "connection":
            raise ValueError(f'"{event}" is a reserved event name')
        check_event_name(event, self.server.max_event_name_length)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def ack(responses: Any) -> None:
            if fut.done():
                return
            if isinstance(responses, BaseException):
                fut.set_exception(responses)
            else:
                fut.set_result(list(responses))

        self.adapter.server_side_emit([event, *args], ack)
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise AckTimeoutError("operation has timed out") from None

    # adapter-facing (NamespaceLike) ------------------------------------------------------
    def _next_ack_id(self) -> int:
        ack_id = self._ack_id
        self._ack_id += 1
        return ack_id

    def deliver(self, packet: Packet, socket_ids: Iterable[SocketId], flags: BroadcastFlags) -> None:
        """Encode once, queue the same messages on each listed local socket's connection."""
        messages = self.server._messages(packet, flags.compress)
        if flags.volatile or self._watchers:
            self._deliver_slow(packet, messages, socket_ids, flags.volatile)
            return
        # Hot loop: one dict subscript, one attribute and one call per recipient (the
        # socket's _send is its connection's queueing method itself); misses are rare.
        if not isinstance(socket_ids, (tuple, list)):
            socket_ids = tuple(socket_ids)
        sockets = self.sockets
        missed = 0
        for sid in socket_ids:
            try:
                send = sockets[sid]._send
            except KeyError:
                self._deliver_preconnect(sid, messages)
                missed += 1
                continue
            send(messages)
        self.server.metrics.packets_out += len(socket_ids) - missed

    def _deliver_slow(
        self, packet: Packet, messages: list[OutgoingMessage], socket_ids: Iterable[SocketId], volatile: bool
    ) -> None:
        """Delivery with outgoing listeners or volatile checks (off the common path)."""
        get = self.sockets.get
        count = 0
        for sid in socket_ids:
            socket = get(sid)
            if socket is None:
                self._deliver_preconnect(sid, messages)
                continue
            if volatile and not getattr(socket.client.conn, "writable", True):
                continue
            if socket._any_outgoing:
                socket._notify_outgoing(packet.data)
            socket._send(messages)
            count += 1
        self.server.metrics.packets_out += count

    def _deliver_preconnect(self, sid: SocketId, messages: list[OutgoingMessage]) -> None:
        socket = self._preconnect.get(sid)
        if socket is not None and socket._pending is not None:
            socket._pending.append(messages)

    def deliver_with_ack(
        self,
        packet: Packet,
        socket_ids: Iterable[SocketId],
        flags: BroadcastFlags,
        ack: Callable[[Any], None],
    ) -> int:
        """Deliver with one namespace-wide ack id; each socket's answer calls `ack(first_arg)`."""
        ack_id = self._next_ack_id()
        packet = Packet(packet.type, packet.nsp, packet.data, ack_id)
        messages = self.server._messages(packet, flags.compress)

        def on_answer(*args: Any) -> None:
            ack(args[0] if args else None)

        pending = PendingAck(Callback(on_answer, "broadcast ack"))  # one for every recipient

        registered: list[tuple[Socket, int]] = []
        sockets = self.sockets
        volatile = flags.volatile
        for sid in socket_ids:
            socket = sockets.get(sid)
            if socket is None:
                continue
            if volatile and not getattr(socket.client.conn, "writable", True):
                continue  # dropped: not counted, so the broadcast does not wait for it
            socket.acks[ack_id] = pending
            registered.append((socket, ack_id))
            if socket._any_outgoing:
                socket._notify_outgoing(packet.data)
            socket._send(messages)
        if registered:
            self._broadcast_acks[ack] = registered
        self.server.metrics.packets_out += len(registered)
        return len(registered)

    def forget_broadcast_acks(self, ack: Callable[..., Any]) -> None:
        """Drop the per-socket ack entries that `deliver_with_ack(..., ack)` registered.

        Called when the broadcast finished or timed out, so late answers find nothing to call.
        """
        for socket, ack_id in self._broadcast_acks.pop(ack, ()):
            socket.acks.pop(ack_id, None)

    def local_socket(self, sid: SocketId) -> Socket | None:
        return self.sockets.get(sid)

    def on_server_side_emit(self, args: list[Any], ack: Callable[[Any], None] | None) -> None:
        if not args:
            return
        event, rest = args[0], list(args[1:])
        handlers = self._handlers.get(event)
        if not handlers:
            return
        answered = False

        def reply(*values: Any) -> None:
            nonlocal answered
            if ack is not None and not answered:
                answered = True
                ack(values[0] if len(values) == 1 else list(values) if values else None)

        tasks = self.server._tasks
        for callback in list(handlers):
            callback.fire(tasks, rest, reply if ack is not None else None)

    # connections -------------------------------------------------------------------------
    async def _add(self, client: Client, auth: dict[str, Any], pid: Any = None, offset: Any = None) -> None:
        """Handle a CONNECT: maybe restore a session, run middlewares, then connect or refuse.

        `pid`/`offset` are the recovery credentials the client sent (taken out of `auth`)."""
        self._joining += 1
        try:
            await self._connect_socket(client, auth, pid, offset)
        finally:
            self._joining -= 1
            if self._parent is not None:
                self._parent._child_emptied(self)

    async def _connect_socket(self, client: Client, auth: dict[str, Any], pid: Any, offset: Any) -> None:
        await self._ensure_ready()
        socket = await self._create_socket(client, auth, pid, offset)
        if client.closed:
            socket._cleanup()
            return
        recovery = self.recovery
        if not (socket.recovered and recovery is not None and recovery.skip_middlewares):
            err = await run_middlewares(self._fns, socket)
            if client.closed:
                socket._cleanup()
                return
            if err is not None:
                socket._cleanup()
                client._packet(Packet(PacketType.CONNECT_ERROR, self.name, connect_error_data(err), None))
                return
        self._do_connect(client, socket)

    async def _create_socket(self, client: Client, auth: dict[str, Any], pid: Any = None, offset: Any = None) -> Socket:
        if self.recovery is not None and isinstance(pid, str):
            offset = offset if isinstance(offset, str) else None
            metrics = self.server.metrics
            metrics.recoveries_attempted += 1
            live = self._by_pid.get(pid)
            if live is not None and live.client is not client and live.connected:
                # The newest connection presenting the pid takes the session over (the pid is
                # the secret; usually the client reconnected before this server noticed its old
                # transport died). The old socket's state is captured and persisted, then its
                # connection is closed, so a client still behind it notices (and reconnects)
                # instead of having its events dropped silently.
                live._on_close("forced server close", "superseded by a new connection")
                live.client._close("forced server close")
                if live._persisting is not None:
                    await asyncio.wait([live._persisting])
            failure = UNKNOWN_SESSION  # what a None from the adapter means
            try:
                restored = await self.adapter.restore_session(pid, offset)
            except RecoveryRefused as refused:
                restored, failure = None, refused.cause
            except RecoveryUnavailable:
                # pg-session helper (issue 7, fault 1): the session store is unreachable, so
                # the session may exist: no fresh session; close the Engine.IO connection and
                # the client reconnects later with the same pid/offset (the caller sees
                # client.closed and drops this placeholder socket)
                logger.warning("session store unreachable: closing the connection of client %s", client.id)
                client._close("forced server close")
                socket = Socket(self, client, auth)
                socket.recovery_failure = metrics.recovery_failed(UNAVAILABLE)
                return socket
            except Exception:
                logger.exception("restoring session failed; starting a fresh one")
                no_session(pid, "restore raised")
                restored, failure = None, ERROR
            if restored is not None and client.closed:
                # gone while restoring: put the (consumed) session back for the next attempt
                session = Session(
                    restored.sid, restored.pid, self.name, restored.rooms, restored.data, offset,
                    join_offsets=restored.join_offsets,
                )
                await self.adapter.persist_session(session)
                no_session(pid, "client gone while restoring (session put back)")
                return Socket(self, client, auth)  # dropped by the caller: no failure to count
            if restored is not None:
                metrics.recoveries_succeeded += 1
                old = self.sockets.get(restored.sid) or self._preconnect.get(restored.sid)
                if old is not None:  # a stale connection still holds this id: give it up quietly
                    old._detach()
                    if self.sockets.get(old.id) is old:
                        del self.sockets[old.id]
                    if self._preconnect.get(old.id) is old:
                        del self._preconnect[old.id]
                    if old.pid is not None and self._by_pid.get(old.pid) is old:
                        del self._by_pid[old.pid]
                    self.adapter.delete_all(old.id)
                    if old.client is not client:
                        # its connection may still be open (a concurrent restore of the same
                        # pid won the race): close it so its client notices, never leave it
                        # open with its events dropped (decision 3 of issue 7)
                        old.client._close("forced server close")
                socket = Socket(self, client, auth, restored, offset)
                socket._pending = []
                self._preconnect[socket.id] = socket
                return socket
            socket = Socket(self, client, auth)
            socket.recovery_failure = metrics.recovery_failed(failure)
            return socket
        if self.recovery is not None and pid is not None and not isinstance(pid, str):
            no_session(pid, "pid is not a string")
        return Socket(self, client, auth)

    def _do_connect(self, client: Client, socket: Socket) -> None:
        if self._preconnect.get(socket.id) is socket:
            del self._preconnect[socket.id]
        self.sockets[socket.id] = socket
        if socket.pid is not None:
            self._by_pid[socket.pid] = socket
        client._add_socket(socket)
        socket._on_connect()
        tasks = self.server._tasks
        for callback in list(self._handlers.get("connection", ())):
            callback.fire(tasks, (socket,))

    def _remove(self, socket: Socket) -> None:
        """Forget `socket` only if it is the very socket registered under its id (#4880)."""
        if self.sockets.get(socket.id) is socket:
            del self.sockets[socket.id]
        if socket.pid is not None and self._by_pid.get(socket.pid) is socket:
            del self._by_pid[socket.pid]
        if self._preconnect.get(socket.id) is socket:
            del self._preconnect[socket.id]
        if self._parent is not None and not self.sockets:
            self._parent._child_emptied(self)

    async def _close_adapter(self) -> None:
        """Close this namespace's adapter (after its init, if that is still running)."""
        ready = self._ready
        if ready is not None and not ready.done():
            await asyncio.wait([ready])
        try:
            await self.adapter.close()
        except Exception:
            logger.exception("closing the adapter of %s failed", clip(self.name))


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if fut.cancelled() or (exc := fut.exception()) is None:
        return
    if isinstance(exc, (SiopgError, OSError)):  # a database down or not migrated: the message says it all
        logger.error("adapter init failed: %s", exc or type(exc).__name__)
    else:
        logger.error("adapter init failed", exc_info=exc)
