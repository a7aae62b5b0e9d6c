"""Rooms, broadcasts (encode once), broadcast acks with timeout and partial answers, socket ops."""

from __future__ import annotations

import asyncio

import pytest

import siopg
from siopg.parser import PacketType
from siopg.server.testing import FakeClient

from .helpers import settle


async def connect_many(io, n):
    sockets = []
    io.on("connection", sockets.append)
    clients = []
    for _ in range(n):
        client = FakeClient(io)
        await client.connected()
        clients.append(client)
    await settle()
    return clients, sockets


async def test_rooms_and_except(io):
    clients, sockets = await connect_many(io, 3)
    a, b, c = sockets
    a.join("red")
    b.join(["red", "blue"])
    c.join("blue")
    assert a.rooms == {a.id, "red"} and b.rooms == {b.id, "red", "blue"}
    io.to("red").except_("blue").emit("only-a", 1)
    io.in_(["red", "blue"]).emit("all", 2)
    b.to("red").emit("from-b")  # socket.to excludes the sender
    b.broadcast.emit("not-b")
    await io.emit("everyone")
    names = [[e[0] for e in cl.events()] for cl in clients]
    assert names[0] == ["only-a", "all", "from-b", "not-b", "everyone"]
    assert names[1] == ["all", "everyone"]
    assert names[2] == ["all", "not-b", "everyone"]
    c.leave("blue")
    io.to("blue").emit("blue-again")
    assert [e[0] for e in clients[2].events()][-1] == "everyone"


async def test_broadcast_encodes_once(io):
    clients, _ = await connect_many(io, 3)
    before = [len(c.conn.sent) for c in clients]
    io.emit("big", {"x": "y" * 1000}, b"\x01\x02")
    batches = [c.conn.sent[before[i]] for i, c in enumerate(clients)]
    assert len(batches[0]) == 2  # text header + one binary attachment
    assert batches[0] is batches[1] is batches[2]  # the very same encoded messages


async def test_room_events_from_adapter(io):
    events = []
    adapter = io.of("/").adapter
    for name in ("create-room", "delete-room", "join-room", "leave-room"):
        adapter.on(name, lambda *args, name=name: events.append((name, *args)))
    _, (socket,) = await connect_many(io, 1)
    socket.join("r")
    socket.leave("r")
    assert ("create-room", "r") in events and ("join-room", "r", socket.id) in events
    assert events[-2:] == [("leave-room", "r", socket.id), ("delete-room", "r")]


async def test_broadcast_with_ack_all_answer(io):
    clients, _ = await connect_many(io, 3)
    fut = io.timeout(1).emit_with_ack("q", 1)
    for i, client in enumerate(clients):
        packet = await client.wait_for(lambda p: p.type == PacketType.EVENT and p.data[0] == "q")
        client.ack(packet.id, f"a{i}", "ignored-second-arg")
    assert sorted(await fut) == ["a0", "a1", "a2"]
    assert all(not s.acks for s in io.sockets.sockets.values())


async def test_broadcast_with_ack_timeout_keeps_partial_answers(io):
    clients, _ = await connect_many(io, 3)
    fut = io.timeout(0.05).emit_with_ack("q")
    packet = await clients[0].wait_for(lambda p: p.type == PacketType.EVENT and p.data[0] == "q")
    clients[0].ack(packet.id, "only-me")
    with pytest.raises(siopg.AckTimeoutError) as info:
        await fut
    assert info.value.responses == ["only-me"]
    assert all(not s.acks for s in io.sockets.sockets.values())  # no leaked ack entries
    # a late answer is ignored
    packet = await clients[1].wait_for(lambda p: p.type == PacketType.EVENT and p.data[0] == "q")
    clients[1].ack(packet.id, "late")


async def test_broadcast_with_ack_callback_style(io):
    clients, _ = await connect_many(io, 2)
    results = []
    io.timeout(1).emit("q", callback=lambda err, responses: results.append((err, responses)))
    for client in clients:
        packet = await client.wait_for(lambda p: p.type == PacketType.EVENT and p.data[0] == "q")
        client.ack(packet.id, 7)
    await settle()
    assert results == [(None, [7, 7])]
    io.timeout(0.01).emit("q2", callback=lambda err, responses: results.append((type(err), responses)))
    await asyncio.sleep(0.05)
    assert results[-1] == (siopg.AckTimeoutError, [])


async def test_broadcast_with_ack_to_nobody_completes(io):
    assert await io.to("empty-room").timeout(1).emit_with_ack("q") == []


async def test_fetch_and_socket_operations(io):
    clients, sockets = await connect_many(io, 3)
    sockets[0].join("r")
    sockets[1].join("r")
    found = await io.in_("r").fetch_sockets()
    assert {s.id for s in found} == {sockets[0].id, sockets[1].id}
    await io.in_("r").sockets_join("s")
    assert "s" in sockets[0].rooms and "s" not in sockets[2].rooms
    await io.sockets_leave("r")
    assert "r" not in sockets[1].rooms
    await io.in_("s").disconnect_sockets()
    assert set(io.sockets.sockets) == {sockets[2].id}
    assert await io.server_count() == 1


async def test_server_side_emit_single_server(io):
    got = []
    io.on("ping-servers", lambda *args: got.append(args))
    io.server_side_emit("ping-servers", 1)
    assert await io.timeout(1).server_side_emit_with_ack("ping-servers", 1) == []
    assert got == []  # only other servers' listeners run


async def test_volatile_and_local_flags_still_deliver(io):
    clients, _ = await connect_many(io, 1)
    io.volatile.emit("v")
    io.local.emit("l")
    io.compress(False).emit("c")
    assert [e[0] for e in clients[0].events()] == ["v", "l", "c"]


async def test_metrics_count_broadcast_once(io):
    clients, _ = await connect_many(io, 4)
    out_before = io.metrics.packets_out
    io.emit("x")
    assert io.metrics.broadcasts == 1
    assert io.metrics.packets_out - out_before == 4
    from siopg.metrics import render

    body, _ = render(io.metrics_registry)
    assert b'siopg_connected_sockets{namespace="/"} 4.0' in body


async def test_broadcast_ack_waits_for_every_server_of_a_cluster():
    """Answers are complete only once every server reported its client count and every
    counted client answered; counts may arrive after answers."""
    from siopg.adapter.memory import InMemoryAdapter

    remote: dict[str, object] = {}

    class TwoServers(InMemoryAdapter):
        async def server_count(self) -> int:
            return 2

        def broadcast_with_ack(self, packet, opts, client_count_callback, ack):
            super().broadcast_with_ack(packet, opts, client_count_callback, ack)
            remote["count"], remote["ack"] = client_count_callback, ack

    io = siopg.Server(adapter=TwoServers)
    try:
        clients, _ = await connect_many(io, 1)
        fut = io.timeout(1).emit_with_ack("q")
        packet = await clients[0].wait_for(lambda p: p.type == PacketType.EVENT)
        clients[0].ack(packet.id, "local")
        await settle()
        assert not fut.done()  # the other server has not reported yet
        remote["ack"]("remote-1")  # an answer may overtake its server's count
        await settle()
        assert not fut.done()
        remote["count"](2)
        await settle()
        assert not fut.done()  # one remote client still owes an answer
        remote["ack"]("remote-2")
        assert sorted(await fut) == ["local", "remote-1", "remote-2"]
    finally:
        await io.close()
