"""A cluster-ready adapter: socket.io-adapter's ClusterAdapter protocol over any ordered transport.

One instance per namespace. A transport subclass implements `do_publish` (send a message to
every server, in order, itself included) and `other_server_ids` (who is alive), and feeds
every message it receives (its own too) to `on_message`. This class turns the cluster
operations into messages and answers the requests of other servers:

  broadcast                BROADCAST, delivered locally when it comes back through the
                           transport, so local delivery follows the log's (offset) order,
                           outages included (never ahead of the log: no packet twice)
  broadcast with acks      BROADCAST + requestId; each server answers BROADCAST_CLIENT_COUNT
                           once, then BROADCAST_ACK per client answer; the local part is
                           delivered at once (no offset, never replayed, so never twice)
  sockets join/leave/...   SOCKETS_JOIN, SOCKETS_LEAVE, DISCONNECT_SOCKETS (applied locally at once)
  fetch_sockets            FETCH_SOCKETS -> FETCH_SOCKETS_RESPONSE from every other server;
                           their sockets come back as plain `SocketDetails`
  server_side_emit         SERVER_SIDE_EMIT (+ requestId) -> SERVER_SIDE_EMIT_RESPONSE
  close                    ADAPTER_CLOSE: other servers stop waiting for this one

The sockets of this process are found through a `RoomIndex` (rooms.py, shared with
`InMemoryAdapter` by composition): a cluster adapter keeps no in-memory recovery log; a
transport that supports recovery (the Postgres adapter) implements it on its own log and
supplies the log head that join offsets are taken from (`_log_head`).

Liveness (heartbeats) is the transport's business: `other_server_ids()` answers it, and the
transport calls `forget_server(uid)` when a server is gone, so pending requests finish early.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from siopg._log import clip
from siopg._tasks import TaskSet
from siopg.adapter.base import Adapter, BroadcastFlags, BroadcastOptions, NamespaceLike, Room, SocketDetails, SocketId
from siopg.adapter.errors import AckTimeoutError
from siopg.adapter.rooms import RoomIndex, RoomListener
from siopg.parser import Packet, PacketType

log = logging.getLogger("siopg.adapter.cluster")

EMITTER_UID = "emitter"
DEFAULT_REQUEST_TIMEOUT = 5.0


class MessageType(IntEnum):
    """socket.io-adapter's message types (same numbers, so logs read the same)."""

    INITIAL_HEARTBEAT = 1
    HEARTBEAT = 2
    BROADCAST = 3
    SOCKETS_JOIN = 4
    SOCKETS_LEAVE = 5
    DISCONNECT_SOCKETS = 6
    FETCH_SOCKETS = 7
    FETCH_SOCKETS_RESPONSE = 8
    SERVER_SIDE_EMIT = 9
    SERVER_SIDE_EMIT_RESPONSE = 10
    BROADCAST_CLIENT_COUNT = 11
    BROADCAST_ACK = 12
    ADAPTER_CLOSE = 13
    # siopg's own: a restoring server asks the server holding a live session to hand it over
    # (decision 3 of issue 7: a pid presented while its session is live is a takeover)
    SESSION_TAKEOVER = 101
    SESSION_TAKEOVER_RESPONSE = 102
    # a restoring server found no row for a pid: it asks every other server whether it holds
    # that session unwritten (a connected socket, or session writes still queued)
    SESSION_LOOKUP = 103
    SESSION_LOOKUP_RESPONSE = 104


RESPONSE_TYPES = frozenset(
    (
        MessageType.FETCH_SOCKETS_RESPONSE,
        MessageType.SERVER_SIDE_EMIT_RESPONSE,
        MessageType.BROADCAST_CLIENT_COUNT,
        MessageType.BROADCAST_ACK,
        MessageType.SESSION_TAKEOVER_RESPONSE,
        MessageType.SESSION_LOOKUP_RESPONSE,
    )
)


@dataclass(slots=True)
class ClusterMessage:
    """One message between servers. `data` holds only msgpack-able values.

    For BROADCAST, `rooms`/`except_` say who receives it and `recoverable` whether it is an
    eligible CSR packet (EVENT, no ack, not volatile); `target` addresses a response.
    """

    type: MessageType
    uid: str
    nsp: str
    data: dict[str, Any] = field(default_factory=dict)
    rooms: tuple[Room, ...] = ()
    except_: tuple[Room, ...] = ()
    recoverable: bool = False
    target: str | None = None


def encode_flags(flags: BroadcastFlags) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if flags.volatile:
        out["volatile"] = True
    if flags.compress is not None:
        out["compress"] = flags.compress
    if flags.local:
        out["local"] = True
    if flags.timeout is not None:
        out["timeout"] = flags.timeout
    return out


_NO_FLAGS = BroadcastFlags()


def decode_flags(raw: Any) -> BroadcastFlags:
    if not raw or not isinstance(raw, dict):
        return _NO_FLAGS
    timeout = raw.get("timeout")
    compress = raw.get("compress")
    return BroadcastFlags(
        volatile=raw.get("volatile") is True,
        compress=compress if isinstance(compress, bool) else None,
        local=False,
        timeout=float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None,
    )


def encode_opts(opts: BroadcastOptions) -> dict[str, Any]:
    return {"rooms": sorted(opts.rooms), "except": sorted(opts.except_), "flags": encode_flags(opts.flags)}


def decode_opts(raw: Any) -> BroadcastOptions:
    if not isinstance(raw, dict):
        raise ValueError("broadcast options must be a map")
    return BroadcastOptions(
        rooms=_room_set(raw.get("rooms")), except_=_room_set(raw.get("except")), flags=decode_flags(raw.get("flags"))
    )


def _room_set(raw: Any) -> frozenset[Room]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, (list, tuple)) or not all(isinstance(r, str) for r in raw):
        raise ValueError("rooms must be a list of strings")
    return frozenset(raw)


def is_recoverable(packet: Packet, opts: BroadcastOptions) -> bool:
    return packet.type == PacketType.EVENT and packet.id is None and not opts.flags.volatile


def _new_id() -> str:
    return secrets.token_hex(8)


@dataclass(slots=True)
class _Request:
    type: MessageType
    missing: set[str]
    responses: list[Any]
    done: Callable[[list[Any], bool], None]  # (responses, complete)
    timer: asyncio.TimerHandle | None = None


class ClusterAdapter(Adapter):
    """Cluster operations as messages; subclass for a transport (see the module docstring)."""

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    def __init__(self, nsp: NamespaceLike, uid: str) -> None:
        super().__init__(nsp)
        self.uid = uid
        # join offsets are kept when the namespace has recovery on (the transport's log)
        self.index = RoomIndex(nsp, track_joins=getattr(nsp, "recovery", None) is not None)
        self.rooms, self.sids = self.index.rooms, self.index.sids
        self._requests: dict[str, _Request] = {}
        self._ack_requests: dict[str, tuple[Callable[[int], None], Callable[[Any], None]]] = {}
        self._closed = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks = TaskSet(log)  # background work (acks, takeover answers): kept until done
        self._wire_warned: set[SocketId] = set()  # sockets whose description needed carryable()

    def _later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """call_later that close() cancels (no timer outlives the adapter)."""
        handles = self._timers

        def run() -> None:
            handles.discard(handle)
            fn(*args)

        handle = asyncio.get_running_loop().call_later(delay, run)
        handles.add(handle)

    # rooms (this process's sockets) -------------------------------------------------------
    def on(self, event: str, handler: RoomListener) -> RoomListener:
        """Room events of this process's sockets (see `InMemoryAdapter.on`)."""
        return self.index.on(event, handler)

    def off(self, event: str, handler: RoomListener | None = None) -> None:
        self.index.off(event, handler)

    def _log_head(self) -> int:
        """The newest log offset this process has read: what a socket joining a room now is
        past. A transport with a log overrides it (only asked when join offsets are kept)."""
        return 0

    def add_all(self, sid: SocketId, rooms: Iterable[Room]) -> None:
        self.index.add_all(sid, rooms, self._log_head() if self.index.joins is not None else 0)

    def delete(self, sid: SocketId, room: Room) -> None:
        self.index.delete(sid, room)

    def delete_all(self, sid: SocketId) -> None:
        self.index.delete_all(sid)
        self._wire_warned.discard(sid)

    def join_offsets(self, sid: SocketId) -> dict[Room, str] | None:
        joins = self.index.joins
        return joins.as_strings(sid) if joins is not None else None

    def restore_join_offsets(self, sid: SocketId, offsets: dict[Room, str]) -> None:
        if self.index.joins is not None:
            self.index.joins.restore(sid, offsets)

    def local_recipients(self, opts: BroadcastOptions) -> Iterable[SocketId]:
        return self.index.recipients(opts)

    def local_sockets(self, opts: BroadcastOptions) -> list[Any]:
        return self.index.local_sockets(opts)

    async def sockets(self, rooms: frozenset[Room]) -> set[SocketId]:
        return set(self.index.recipients(BroadcastOptions(rooms=rooms)))

    def broadcast_local(self, packet: Packet, opts: BroadcastOptions) -> None:
        self.nsp.deliver(packet, self.index.recipients(opts), opts.flags)

    def _broadcast_with_ack_local(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count_callback: Callable[[int], None],
        ack: Callable[[Any], None],
    ) -> None:
        count = self.nsp.deliver_with_ack(packet, self.index.recipients(opts), opts.flags, ack)
        client_count_callback(count)

    async def server_count(self) -> int:
        """This server plus the other live ones (transports may count more cheaply)."""
        return len(await self.other_server_ids()) + 1

    # transport hooks ---------------------------------------------------------------------
    def do_publish(self, message: ClusterMessage) -> bool | None:
        """Send to every server (this one too), in call order. Must not raise.

        Returns False when the message was refused (it will never come back; the transport
        reports why). While the transport is down it must keep messages (bounded) and send
        them later: own broadcasts reach local sockets only through it, never ahead of it."""
        raise NotImplementedError

    async def other_server_ids(self) -> set[str]:
        """Ids of the other live servers serving this namespace."""
        raise NotImplementedError

    def _message(self, type_: MessageType, data: dict[str, Any] | None = None, **kw: Any) -> ClusterMessage:
        return ClusterMessage(type_, self.uid, self.nsp.name, data or {}, **kw)

    def wire_check(self, value: Any) -> None:
        """Raise when the transport cannot carry `value` (default: it carries anything).
        Transports that serialise (msgpack for Postgres) override it."""

    def _wire_details(self, socket: Any) -> dict[str, Any]:
        """`describe_socket(socket)` as the transport can carry it: a value it cannot carry
        (a client's auth holding a msgpack Date or a JSON integer over 64 bits, a datetime the
        app stored in `data`) is replaced by None, at the deepest level that holds it, so the
        socket is always listed with everything else intact. Reported once per socket."""
        details = describe_socket(socket)
        if _accepts(self.wire_check, details):
            return details
        fixed, replaced = carryable(details, self.wire_check)
        if socket.id not in self._wire_warned:
            if len(self._wire_warned) >= 10_000:  # bounded: a warning may repeat, memory may not grow
                self._wire_warned.clear()
            self._wire_warned.add(socket.id)
            log.warning("fetch_sockets: socket %s sent with None in place of what the cluster cannot carry: %s",
                        socket.id, clip(", ".join(replaced), 200))
        return fixed

    def publish_response(self, requester: str, type_: MessageType, data: dict[str, Any]) -> None:
        self.do_publish(self._message(type_, data, target=requester))

    # broadcast ---------------------------------------------------------------------------
    @property
    def _csr(self) -> bool:
        return getattr(self.nsp, "recovery", None) is not None

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        """Publish; local sockets get it when it comes back through the transport, with its
        offset, like every other server's sockets (also during an outage: it waits in the
        transport's buffer). Delivering it here first would give a local client a packet
        without offset, which recovery would replay again. A message the transport refuses
        (buffer full, unencodable) reaches nobody; the transport reports it."""
        if opts.flags.local:
            self.broadcast_local(packet, opts)  # never leaves this process: no offset
            return
        self.do_publish(
            self._message(
                MessageType.BROADCAST,
                {"packet": packet.data, "flags": encode_flags(opts.flags)},
                rooms=tuple(sorted(opts.rooms)),
                except_=tuple(sorted(opts.except_)),
                recoverable=is_recoverable(packet, opts),
            )
        )

    def broadcast_with_ack(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count_callback: Callable[[int], None],
        ack: Callable[[Any], None],
    ) -> None:
        if not opts.flags.local:
            request_id = _new_id()
            self._ack_requests[request_id] = (client_count_callback, ack)
            self.do_publish(
                self._message(
                    MessageType.BROADCAST,
                    {"packet": packet.data, "flags": encode_flags(opts.flags), "requestId": request_id},
                    rooms=tuple(sorted(opts.rooms)),
                    except_=tuple(sorted(opts.except_)),
                )
            )
            # the caller times out on its own; forget the request a little after that
            ttl = (opts.flags.timeout or self.request_timeout) + 1.0
            self._later(ttl, self._ack_requests.pop, request_id, None)
        self._broadcast_with_ack_local(packet, opts, client_count_callback, ack)

    # socket operations -------------------------------------------------------------------
    def add_sockets(self, opts: BroadcastOptions, rooms: list[Room]) -> None:
        if not opts.flags.local:
            self.do_publish(self._message(MessageType.SOCKETS_JOIN, {"opts": encode_opts(opts), "rooms": list(rooms)}))
        self.index.join_sockets(opts, rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: list[Room]) -> None:
        if not opts.flags.local:
            self.do_publish(self._message(MessageType.SOCKETS_LEAVE, {"opts": encode_opts(opts), "rooms": list(rooms)}))
        self.index.leave_sockets(opts, rooms)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if not opts.flags.local:
            self.do_publish(
                self._message(MessageType.DISCONNECT_SOCKETS, {"opts": encode_opts(opts), "close": bool(close)})
            )
        self.index.disconnect_sockets(opts, close)

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Any]:
        local = self.index.local_sockets(opts)
        if opts.flags.local:
            return local
        others = await self.other_server_ids()
        if not others:
            return local
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[list[Any], bool]] = loop.create_future()

        def done(responses: list[Any], complete: bool) -> None:
            if not future.done():
                future.set_result((responses, complete))

        request_id = self._start_request(MessageType.FETCH_SOCKETS, others, done, opts.flags.timeout)
        request = self._requests[request_id]
        self.do_publish(self._message(MessageType.FETCH_SOCKETS, {"opts": encode_opts(opts), "requestId": request_id}))
        responses, complete = await future
        if not complete:
            missing = len(request.missing)
            raise AckTimeoutError(f"fetch_sockets: {missing} of {len(others)} servers did not answer", [])
        return local + responses  # SocketDetails: the server wraps them in RemoteSocket

    def server_side_emit(self, args: list[Any], ack: Callable[[Any], None] | None = None) -> None:
        if ack is None:
            self.do_publish(self._message(MessageType.SERVER_SIDE_EMIT, {"packet": list(args)}))
            return
        self._tasks.spawn(self._server_side_emit_with_ack(list(args), ack), "server_side_emit with ack")

    async def _server_side_emit_with_ack(self, args: list[Any], ack: Callable[[Any], None]) -> None:
        try:
            others = await self.other_server_ids()
        except Exception:
            log.exception("server_side_emit: cannot list the other servers")
            others = set()
        if not others:
            ack([])
            return

        def done(responses: list[Any], complete: bool) -> None:
            values = [r["value"] for r in responses]
            if complete:
                ack(values)
            else:
                ack(AckTimeoutError(f"server_side_emit: {len(values)} of {len(others)} servers answered", values))

        request_id = self._start_request(MessageType.SERVER_SIDE_EMIT, others, done, None)
        self.do_publish(self._message(MessageType.SERVER_SIDE_EMIT, {"packet": args, "requestId": request_id}))

    def _start_request(
        self,
        type_: MessageType,
        others: set[str],
        done: Callable[[list[Any], bool], None],
        timeout: float | None,
    ) -> str:
        request_id = _new_id()
        request = _Request(type_, set(others), [], done)
        request.timer = asyncio.get_running_loop().call_later(
            timeout or self.request_timeout, self._finish_request, request_id, False
        )
        self._requests[request_id] = request
        return request_id

    def _finish_request(self, request_id: str, complete: bool) -> None:
        request = self._requests.pop(request_id, None)
        if request is None:
            return
        if request.timer is not None:
            request.timer.cancel()
        try:
            request.done(request.responses, complete)
        except Exception:
            log.exception("error in cluster request callback")

    def forget_server(self, uid: str) -> None:
        """`uid` is gone: stop waiting for its answers."""
        for request_id, request in list(self._requests.items()):
            if uid in request.missing:
                request.missing.discard(uid)
                if not request.missing:
                    self._finish_request(request_id, True)

    def keep_only_servers(self, alive: set[str]) -> None:
        for request in list(self._requests.values()):
            for uid in list(request.missing - alive):
                self.forget_server(uid)

    # receiving ---------------------------------------------------------------------------
    def on_message(self, message: ClusterMessage, offset: str | None = None) -> None:
        """Handle a message from the transport (including this server's own)."""
        if message.nsp != self.nsp.name or self._closed:
            return
        own = message.uid == self.uid
        try:
            if message.type == MessageType.BROADCAST:
                self._on_broadcast(message, offset, own)
            elif own:
                return
            elif message.type in RESPONSE_TYPES:
                if message.target == self.uid:
                    self._on_response(message)
            else:
                self._on_request(message)
        except Exception as exc:  # noqa: BLE001 - malformed input from the transport must not stop it
            log.warning(
                "ignored malformed cluster message type=%s from %s: %s", int(message.type), message.uid, exc
            )

    def _on_broadcast(self, message: ClusterMessage, offset: str | None, own: bool) -> None:
        data = message.data
        args = data.get("packet")
        if not isinstance(args, list) or not args:
            raise ValueError("broadcast packet data must be a non-empty list")
        flags = decode_flags(data.get("flags"))
        opts = BroadcastOptions(frozenset(message.rooms), frozenset(message.except_), flags)
        request_id = data.get("requestId")
        if request_id is not None:
            if own:
                return  # our local part was delivered at once
            requester = message.uid
            rid = str(request_id)

            def on_count(count: int) -> None:
                self.publish_response(
                    requester, MessageType.BROADCAST_CLIENT_COUNT, {"requestId": rid, "clientCount": count}
                )

            def on_ack(response: Any) -> None:
                self.publish_response(requester, MessageType.BROADCAST_ACK, {"requestId": rid, "packet": response})

            self._broadcast_with_ack_local(Packet(PacketType.EVENT, self.nsp.name, list(args)), opts, on_count, on_ack)
            # the requester times out on its own: drop our ack slots then
            ttl = (flags.timeout or self.request_timeout) + 1.0
            self._later(ttl, self.nsp.forget_broadcast_acks, on_ack)
            return
        recipients = self.index.recipients(opts)
        if not recipients:
            return  # nobody here: skip encoding
        packet_data = list(args)
        if message.recoverable and offset is not None and self._csr:
            packet_data.append(offset)
        self.nsp.deliver(Packet(PacketType.EVENT, self.nsp.name, packet_data), recipients, opts.flags)

    def _on_request(self, message: ClusterMessage) -> None:
        data = message.data
        t = message.type
        if t == MessageType.SOCKETS_JOIN:
            self.index.join_sockets(decode_opts(data.get("opts")), _room_list(data.get("rooms")))
        elif t == MessageType.SOCKETS_LEAVE:
            self.index.leave_sockets(decode_opts(data.get("opts")), _room_list(data.get("rooms")))
        elif t == MessageType.DISCONNECT_SOCKETS:
            self.index.disconnect_sockets(decode_opts(data.get("opts")), data.get("close") is True)
        elif t == MessageType.FETCH_SOCKETS:
            opts = decode_opts(data.get("opts"))
            # each socket on its own: one socket whose data the transport cannot carry (a
            # datetime the app stored) must not sink the whole answer (issue 7, red team)
            sockets = [self._wire_details(s) for s in self.index.local_sockets(opts)]
            answer = {"requestId": str(data["requestId"]), "sockets": sockets}
            self.publish_response(message.uid, MessageType.FETCH_SOCKETS_RESPONSE, answer)
        elif t == MessageType.SERVER_SIDE_EMIT:
            args = data.get("packet")
            if not isinstance(args, list) or not args:
                raise ValueError("server-side emit needs an event name")
            request_id = data.get("requestId")
            if request_id is None:
                self.nsp.on_server_side_emit(args, None)
                return
            requester, rid = message.uid, str(request_id)
            answered = False

            def reply(value: Any = None, *more: Any) -> None:
                nonlocal answered
                if answered:
                    return
                answered = True
                self.publish_response(
                    requester, MessageType.SERVER_SIDE_EMIT_RESPONSE, {"requestId": rid, "value": value}
                )

            self.nsp.on_server_side_emit(args, reply)
        elif t == MessageType.SESSION_TAKEOVER:
            self.on_session_takeover(message)
        elif t == MessageType.SESSION_LOOKUP:
            self.on_session_lookup(message)
        elif t == MessageType.ADAPTER_CLOSE:
            self.forget_server(message.uid)
        elif t in (MessageType.HEARTBEAT, MessageType.INITIAL_HEARTBEAT):
            pass
        else:
            raise ValueError("unknown message type")

    def on_session_takeover(self, message: ClusterMessage) -> None:
        """Another server restores a session this one holds live: hand it over, then answer
        SESSION_TAKEOVER_RESPONSE {"requestId", "value": handed_over}. Adapters that keep
        sessions override this; without sessions there is nothing to hand over."""
        self.publish_response(
            message.uid, MessageType.SESSION_TAKEOVER_RESPONSE,
            {"requestId": str(message.data.get("requestId")), "value": False},
        )

    def on_session_lookup(self, message: ClusterMessage) -> None:
        """Another server found no session row for a pid: answer SESSION_LOOKUP_RESPONSE
        {"requestId", "value", "final"} once its unwritten session (if this server holds one)
        is written. Adapters that keep sessions override this; without sessions: nothing held."""
        self.publish_response(
            message.uid, MessageType.SESSION_LOOKUP_RESPONSE,
            {"requestId": str(message.data.get("requestId")), "value": False, "final": True},
        )

    def _on_response(self, message: ClusterMessage) -> None:
        data = message.data
        request_id = str(data.get("requestId"))
        t = message.type
        if t == MessageType.BROADCAST_CLIENT_COUNT:
            entry = self._ack_requests.get(request_id)
            count = data.get("clientCount")
            if entry is not None and isinstance(count, int) and count >= 0:
                entry[0](count)
        elif t == MessageType.BROADCAST_ACK:
            entry = self._ack_requests.get(request_id)
            if entry is not None:
                entry[1](data.get("packet"))
        else:
            request = self._requests.get(request_id)
            if request is None or message.uid not in request.missing:
                return  # unknown, finished, or a second answer from the same server
            request.missing.discard(message.uid)
            if t == MessageType.FETCH_SOCKETS_RESPONSE:
                for raw in data.get("sockets") or ():
                    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                        try:
                            request.responses.append(SocketDetails.from_wire(raw))
                        except Exception:  # noqa: BLE001 - one bad description, not the answer
                            log.warning("bad socket description from %s: %s", message.uid, clip(raw))
            else:
                request.responses.append({"value": data.get("value"), "_uid": message.uid})
            if not request.missing:
                self._finish_request(request_id, True)

    # lifecycle ---------------------------------------------------------------------------
    async def close(self) -> None:
        if self._closed:
            return
        self.do_publish(self._message(MessageType.ADAPTER_CLOSE))
        self._closed = True
        for request_id in list(self._requests):
            self._finish_request(request_id, False)
        self._ack_requests.clear()
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._tasks.cancel()
        self.index.clear()


def _room_list(raw: Any) -> list[Room]:
    if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
        raise ValueError("rooms must be a list of strings")
    return raw


def describe_socket(socket: Any) -> dict[str, Any]:
    """What another server learns of a local socket (socket.io's RemoteSocket details)."""
    if hasattr(socket, "describe"):
        return socket.describe()
    hs = socket.handshake
    handshake = {
        name: getattr(hs, name)
        for name in ("headers", "time", "address", "xdomain", "secure", "issued", "url", "query", "auth")
        if hasattr(hs, name)
    }
    return {"id": socket.id, "handshake": handshake, "rooms": sorted(socket.rooms), "data": socket.data}


_MAX_CARRY_DEPTH = 32


def _accepts(check: Callable[[Any], object], value: Any) -> bool:
    """True unless `check(value)` raises (the transport's refusal, whatever its type)."""
    try:
        check(value)
    except Exception:  # noqa: BLE001
        return False
    return True


def carryable(value: Any, check: Callable[[Any], object], path: str = "", depth: int = 0) -> tuple[Any, list[str]]:
    """`value` with every part `check` refuses replaced by None, and the paths replaced.

    Dicts and lists are walked so only the offending leaves go (a dict key the transport
    cannot carry drops its entry); past _MAX_CARRY_DEPTH levels a refused subtree goes whole.
    Called only after `check(value)` failed, so its cost is paid by the rare bad value.
    """
    if _accepts(check, value):
        return value, []
    if depth < _MAX_CARRY_DEPTH and isinstance(value, dict):
        out: dict[Any, Any] = {}
        replaced: list[str] = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not _accepts(check, key):
                replaced.append(where)
                continue
            out[key], more = carryable(item, check, where, depth + 1)
            replaced.extend(more)
        return out, replaced
    if depth < _MAX_CARRY_DEPTH and isinstance(value, (list, tuple)):
        items: list[Any] = []
        replaced = []
        for i, item in enumerate(value):
            fixed, more = carryable(item, check, f"{path}[{i}]", depth + 1)
            items.append(fixed)
            replaced.extend(more)
        return items, replaced
    return None, [path or "(value)"]


def ping_bound(nsp: Any) -> float | None:
    """`ping_interval + ping_timeout` of the server owning `nsp`: how long a dead client
    connection can go unnoticed (duck-typed: the adapter layer never imports the server).
    None when it cannot be read (a namespace stand-in, another server class)."""
    options = getattr(getattr(getattr(nsp, "server", None), "engine", None), "options", None)
    interval, timeout = getattr(options, "ping_interval", None), getattr(options, "ping_timeout", None)
    if isinstance(interval, (int, float)) and isinstance(timeout, (int, float)) and interval >= 0 and timeout >= 0:
        return float(interval) + float(timeout)
    return None
