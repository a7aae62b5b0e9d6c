"""The siopg test app shared by the e2e suite (tests/js/ref_server.mjs is its Node twin).

Every namespace answers the same small set of control events, so a test drives the server
entirely from a client: echo, join/leave/rooms, targeted broadcasts, server->client acks,
broadcast acks and server-side disconnects. Disconnect reasons are reported to the
"observers" room, so tests can see what the server saw.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from typing import Any

import siopg

PING = {"ping_interval": 1.0, "ping_timeout": 2.0}


async def _maybe_await(value: Any) -> Any:
    """Await `value` if it is awaitable (broadcast emits may be sync or async)."""
    if inspect.isawaitable(value):
        return await value
    return value


def _register(io: siopg.Server, nsp: Any) -> None:
    """Attach the control events to every socket that joins `nsp`."""

    def namespace_of(socket: siopg.Socket) -> Any:
        own = socket.nsp
        return io.of(own) if isinstance(own, str) else own

    def nsp_name(socket: siopg.Socket) -> str:
        own = socket.nsp
        return own if isinstance(own, str) else own.name

    async def on_connection(socket: siopg.Socket) -> None:
        auth = socket.handshake.auth or {}
        if auth.get("join") and not socket.recovered:
            socket.join(auth["join"])
        space = namespace_of(socket)

        async def disconnect(reason: str, description: Any = None) -> None:
            await _maybe_await(space.to("observers").emit("disconnected", {"id": socket.id, "reason": reason}))

        socket.on("disconnect", disconnect)

        async def echo(*args: Any, ack: Any = None) -> None:
            if ack is not None:
                ack(*args)
            else:
                await socket.emit("echo", *args)

        def whoami(ack: Any = None) -> None:
            ack({"id": socket.id, "nsp": nsp_name(socket), "recovered": socket.recovered,
                 "recovery_failure": getattr(socket, "recovery_failure", None),
                 "auth": auth, "query": dict(socket.handshake.query)})

        def join(room: str, ack: Any = None) -> None:
            socket.join(room)
            ack(sorted(socket.rooms))

        def leave(room: str, ack: Any = None) -> None:
            socket.leave(room)
            ack(sorted(socket.rooms))

        def set_data(key: str, value: Any, ack: Any = None) -> None:
            socket.data[key] = value
            ack(True)

        def get_data(ack: Any = None) -> None:
            ack(dict(socket.data))

        def rooms(ack: Any = None) -> None:
            ack(sorted(socket.rooms))

        async def rooms_of(sid: str, ack: Any = None) -> None:
            found = await space.in_(sid).fetch_sockets()
            ack(sorted(found[0].rooms) if found else None)

        async def to(rooms_: Any, except_: Any, event: str, args: list[Any], ack: Any = None) -> None:
            op = space.to(rooms_)
            if except_:
                op = op.except_(except_)
            await _maybe_await(op.emit(event, *args))
            ack(True)

        async def broadcast(event: str, args: list[Any], ack: Any = None) -> None:
            await _maybe_await(socket.broadcast.emit(event, *args))
            ack(True)

        async def everyone(event: str, args: list[Any], ack: Any = None) -> None:
            await _maybe_await(space.emit(event, *args))
            ack(True)

        async def ask(event: str, args: list[Any], timeout_ms: int, ack: Any = None) -> None:
            try:
                answer = await socket.timeout(timeout_ms / 1000).emit_with_ack(event, *args)
            except siopg.AckTimeoutError:
                ack({"error": "timeout"})
            else:
                ack({"ok": answer})

        async def ask_all(event: str, args: list[Any], timeout_ms: int, ack: Any = None) -> None:
            try:
                answers = await space.timeout(timeout_ms / 1000).emit_with_ack(event, *args)
            except siopg.AckTimeoutError as exc:
                ack({"error": "timeout", "responses": list(exc.responses)})
            else:
                ack({"ok": list(answers)})

        async def burst(rooms_: Any, event: str, count: int, ack: Any = None) -> None:
            for i in range(count):
                await _maybe_await(space.to(rooms_).emit(event, i, {"i": i, "bin": bytes([i % 256])}))
            ack(count)

        async def kick(*args: Any, ack: Any = None) -> None:
            close = bool(args and args[0])  # close=True also closes the engine connection
            ack(True)
            await asyncio.sleep(0.02)
            await socket.disconnect(close=close)

        for name, handler in {
            "echo": echo, "whoami": whoami, "join": join, "leave": leave, "rooms": rooms,
            "rooms_of": rooms_of, "set_data": set_data, "get_data": get_data, "to": to, "broadcast": broadcast, "everyone": everyone,
            "ask": ask, "ask_all": ask_all, "burst": burst, "kick": kick,
        }.items():
            socket.on(name, handler)

    nsp.on("connection")(on_connection)


async def _admin_guard(socket: siopg.Socket, next_: Any) -> None:
    """Refuse sockets without the right token, with a message and data for the client."""
    if (socket.handshake.auth or {}).get("token") == "secret":
        next_()
    else:
        next_(siopg.ConnectError("not authorized", {"code": 401, "hint": "send a token"}))


async def _strict_guard(socket: siopg.Socket, next_: Any) -> None:
    """Refuse everyone by raising, the other documented way to refuse."""
    raise siopg.ConnectError("go away", {"reason": "banned"})


def build(**options: Any) -> siopg.Server:
    """A server with the control events on "/", "/chat", "/dyn-<n>", a guarded "/admin" and a closed "/strict"."""
    io = siopg.Server(**{**PING, **options})
    _register(io, io.of("/"))
    _register(io, io.of("/chat"))
    _register(io, io.of(re.compile(r"^/dyn-\d+$")))
    admin = io.of("/admin")
    admin.use(_admin_guard)
    _register(io, admin)
    strict = io.of("/strict")
    strict.use(_strict_guard)
    _register(io, strict)
    return io
