"""Server layer over fake engine connections: namespaces, middlewares, events, acks, disconnects."""

from __future__ import annotations

import asyncio
import re

import pytest

import siopg
from siopg.parser import PacketType
from siopg.server.testing import FakeClient

from .helpers import settle


async def test_connect_main_namespace(io):
    seen = []
    io.on("connection", seen.append)
    client = FakeClient(io)
    reply = await client.connected("/", {"token": "t"})
    assert set(reply) == {"sid"}
    await settle()
    (socket,) = seen
    assert socket.id == reply["sid"] != client.conn.sid
    assert len(socket.id) == 20
    assert socket.handshake.auth == {"token": "t"}
    assert socket.handshake.address == "127.0.0.1"
    assert isinstance(socket.handshake.time, str) and socket.handshake.issued > 0
    assert socket.rooms == {socket.id}
    assert io.sockets.sockets[socket.id] is socket


async def test_unknown_namespace_is_refused(io):
    client = FakeClient(io)
    client.connect("/nope")
    packet = await client.wait_for(lambda p: p.type == PacketType.CONNECT_ERROR)
    assert packet.nsp == "/nope"
    assert packet.data == {"message": "Invalid namespace"}


@pytest.mark.parametrize("style", ["next", "raise", "async-next", "late-next"])
async def test_middleware_refusal(io, style):
    nsp = io.of("/admin")

    if style == "next":

        def mw(socket, next_):
            next_(siopg.ConnectError("not authorized", {"code": 7}))

    elif style == "raise":

        async def mw(socket, next_):
            raise siopg.ConnectError("not authorized", {"code": 7})

    elif style == "async-next":

        async def mw(socket, next_):
            await asyncio.sleep(0)
            next_(siopg.ConnectError("not authorized", {"code": 7}))

    else:

        def mw(socket, next_):
            asyncio.get_running_loop().call_later(0.01, next_, siopg.ConnectError("not authorized", {"code": 7}))

    nsp.use(mw)
    connected = []
    nsp.on("connection", connected.append)
    client = FakeClient(io)
    client.connect("/admin")
    packet = await client.wait_for(lambda p: p.type == PacketType.CONNECT_ERROR)
    assert packet.data == {"message": "not authorized", "data": {"code": 7}}
    assert connected == [] and nsp.sockets == {}


async def test_middlewares_run_in_order_and_can_set_data(io):
    order = []

    def first(socket, next_):
        order.append(1)
        socket.data["user"] = socket.handshake.auth.get("user")
        next_()

    async def second(socket, next_):
        order.append(2)
        next_()

    io.use(first)
    io.use(second)
    users = []
    io.on("connection", lambda s: users.append(s.data["user"]))
    client = FakeClient(io)
    await client.connected("/", {"user": "ann"})
    await settle()
    assert order == [1, 2] and users == ["ann"]


async def test_unexpected_middleware_error_does_not_leak(io):
    def broken(socket, next_):
        raise RuntimeError("db password is hunter2")

    io.use(broken)
    client = FakeClient(io)
    client.connect("/")
    packet = await client.wait_for(lambda p: p.type == PacketType.CONNECT_ERROR)
    assert packet.data == {"message": "Internal server error"}


async def test_dynamic_namespaces_regex_and_callable(io):
    parent = io.of(re.compile(r"^/dyn-\d+$"))
    parent.use(lambda s, next_: next_())
    joined = []
    parent.on("connection", lambda s: joined.append(s.nsp.name))

    async def allow(name, auth):
        return auth.get("ok") is True

    io.of(allow).on("connection", lambda s: joined.append(s.nsp.name))
    client = FakeClient(io)
    await client.connected("/dyn-12")
    await client.connected("/free", {"ok": True})
    client.connect("/dyn-x")
    refused = await client.wait_for(lambda p: p.type == PacketType.CONNECT_ERROR)
    assert refused.nsp == "/dyn-x"
    await settle()
    assert joined == ["/dyn-12", "/free"]
    assert io.of("/dyn-12") in parent.children
    # a parent's emit reaches its children
    parent.emit("hello", 1)
    assert client.events("hello", nsp="/dyn-12") == [["hello", 1]]


async def test_event_with_ack_and_without(io):
    got = []

    @io.on("connection")
    def on_connection(socket):
        @socket.on("sum")
        async def add(a, b, ack=None):
            got.append((a, b, ack is not None))
            if ack:
                ack(a + b, "ok")

        @socket.on("kw")
        def kw(*args, **kwargs):
            kwargs["ack"](*args)

    client = FakeClient(io)
    await client.connected()
    client.emit("sum", 1, 2, ack_id=5)
    client.emit("sum", 3, 4)
    client.emit("kw", b"\x00bin", ack_id=6)
    await settle()
    acks = [p for p in client.received() if p.type == PacketType.ACK]
    assert sorted((p.id, p.data) for p in acks) == [(5, [3, "ok"]), (6, [b"\x00bin"])]
    assert got == [(1, 2, True), (3, 4, False)]


async def test_emit_with_ack_and_timeout(io):
    sockets = []
    io.on("connection", sockets.append)
    client = FakeClient(io)
    await client.connected()
    await settle()
    (socket,) = sockets
    fut = socket.timeout(1).emit_with_ack("question", 1)
    packet = await client.wait_for(lambda p: p.type == PacketType.EVENT and p.data[0] == "question")
    assert packet.id is not None
    client.ack(packet.id, "answer")
    assert await fut == "answer"
    many = socket.emit_with_ack("many")
    packet = await client.wait_for(lambda p: p.type == PacketType.EVENT and p.data[0] == "many")
    client.ack(packet.id, 1, 2)
    assert await many == [1, 2]
    with pytest.raises(siopg.AckTimeoutError):
        await socket.timeout(0.02).emit_with_ack("silence")
    assert socket.acks == {}


async def test_reserved_events_cannot_be_emitted(io):
    with pytest.raises(ValueError):
        io.emit("disconnect")
    sockets = []
    io.on("connection", sockets.append)
    client = FakeClient(io)
    await client.connected()
    await settle()
    with pytest.raises(ValueError):
        sockets[0].emit("connect")


async def test_on_any_and_outgoing_and_socket_middleware(io):
    incoming, outgoing, errors, handled = [], [], [], []

    @io.on("connection")
    def on_connection(socket):
        socket.on_any(lambda event, *args: incoming.append((event, args)))
        socket.on_any_outgoing(lambda event, *args: outgoing.append((event, args)))

        def guard(packet, next_):
            next_(ValueError("forbidden") if packet[0] == "bad" else None)

        socket.use(guard)
        socket.on("error", lambda err: errors.append(str(err)))
        socket.on("good", lambda x: handled.append(x))
        socket.on("bad", lambda x: handled.append(("bad", x)))
        socket.emit("hello", 1)

    client = FakeClient(io)
    await client.connected()
    client.emit("good", 1)
    client.emit("bad", 2)
    await settle()
    assert incoming == [("good", (1,)), ("bad", (2,))]
    assert outgoing == [("hello", (1,))]
    assert handled == [1] and errors == ["forbidden"]


async def test_disconnect_reasons(io):
    reasons = []

    @io.on("connection")
    def on_connection(socket):
        socket.on("disconnecting", lambda reason: reasons.append(("disconnecting", reason, set(socket.rooms))))
        socket.on("disconnect", lambda reason, description=None: reasons.append(("disconnect", reason)))

    sockets = []
    io.on("connection", sockets.append)

    a = FakeClient(io)
    await a.connected()
    await settle()
    a.send(siopg_packet(PacketType.DISCONNECT))
    await settle()
    sid = sockets[0].id
    assert reasons == [("disconnecting", "client namespace disconnect", {sid}), ("disconnect", "client namespace disconnect")]
    assert io.sockets.sockets == {} and io.sockets.adapter.rooms == {}

    reasons.clear()
    b = FakeClient(io)
    await b.connected()
    await settle()
    await sockets[1].disconnect()
    assert reasons[-1] == ("disconnect", "server namespace disconnect")
    assert any(p.type == PacketType.DISCONNECT for p in b.received())
    assert b.conn.closed_with is None

    reasons.clear()
    c = FakeClient(io)
    await c.connected()
    await settle()
    c.conn.drop("ping timeout")
    assert reasons[-1] == ("disconnect", "ping timeout")

    reasons.clear()
    d = FakeClient(io)
    await d.connected()
    await settle()
    sockets[3].disconnect(close=True)
    await settle()
    assert reasons[-1] == ("disconnect", "server namespace disconnect")
    assert d.conn.closed_with is not None


def siopg_packet(ptype, nsp="/", data=None, id=None):
    from siopg.parser import Packet

    return Packet(ptype, nsp, data, id)


async def test_parse_error_closes_connection(io):
    reasons = []
    io.on("connection", lambda s: s.on("disconnect", lambda r: reasons.append(r)))
    client = FakeClient(io)
    await client.connected()
    await settle()
    client.conn.on_message('2["disconnect"]')  # reserved event name: invalid payload
    await settle()
    assert reasons == ["parse error"]
    assert client.conn.closed_with == "parse error"


async def test_connect_timeout_closes_idle_connection():
    io = siopg.Server(connect_timeout=0.02)
    try:
        client = FakeClient(io)
        await asyncio.sleep(0.06)
        assert client.conn.closed_with is not None
        joined = FakeClient(io)
        await joined.connected()
        await asyncio.sleep(0.06)
        assert joined.conn.closed_with is None
    finally:
        await io.close()


async def test_close_disconnects_everyone_with_shutdown_reason():
    io = siopg.Server()
    reasons = []
    io.on("connection", lambda s: s.on("disconnect", lambda r: reasons.append(r)))
    client = FakeClient(io)
    await client.connected()
    await settle()
    await io.close()
    assert reasons == ["server shutting down"]


async def test_pending_emit_with_ack_fails_when_socket_disconnects(io):
    sockets = []
    io.on("connection", sockets.append)
    client = FakeClient(io)
    await client.connected()
    await settle()
    (socket,) = sockets
    no_timeout = socket.emit_with_ack("q")
    with_timeout = socket.timeout(30).emit_with_ack("q")
    client.conn.drop("transport close")
    for fut in (no_timeout, with_timeout):
        with pytest.raises(siopg.AckTimeoutError, match="disconnected"):
            await fut
    with pytest.raises(siopg.AckTimeoutError):
        await socket.emit_with_ack("after")
    await socket.emit("after")  # plain emits on a closed socket are silently dropped
