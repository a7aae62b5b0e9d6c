"""Dynamic namespace parents: operators across every child, and empty-child cleanup."""

from __future__ import annotations

import asyncio
import re

import pytest

import siopg
from siopg.parser import PacketType
from siopg.server.testing import FakeClient

from .helpers import settle


async def two_children(io: siopg.Server):
    """A parent with children /dyn-1 (clients a, b) and /dyn-2 (client c); a and c in room r."""
    parent = io.of(re.compile(r"^/dyn-\d+$"))
    parent.on("connection", lambda s: s.join("r") if s.handshake.auth.get("r") else None)
    a, b, c = FakeClient(io), FakeClient(io), FakeClient(io)
    await a.connected("/dyn-1", {"r": True})
    await b.connected("/dyn-1")
    await c.connected("/dyn-2", {"r": True})
    await settle()
    return parent, a, b, c


async def test_rooms_and_excepts_reach_every_child(io):
    parent, a, b, c = await two_children(io)
    await parent.to("r").emit("to-r", 1)
    await parent.in_("r").except_("nobody").emit("in-r", 2)
    await parent.except_("r").emit("not-r", 3)
    await parent.volatile.local.compress(False).emit("flags", 4)
    assert a.events("to-r", "/dyn-1") == [["to-r", 1]] and c.events("to-r", "/dyn-2") == [["to-r", 1]]
    assert b.events("to-r", "/dyn-1") == []
    assert a.events("in-r", "/dyn-1") == [["in-r", 2]] and c.events("in-r", "/dyn-2") == [["in-r", 2]]
    assert b.events("not-r", "/dyn-1") == [["not-r", 3]]
    assert a.events("not-r", "/dyn-1") == c.events("not-r", "/dyn-2") == []
    assert [len(x.events("flags", n)) for x, n in ((a, "/dyn-1"), (b, "/dyn-1"), (c, "/dyn-2"))] == [1, 1, 1]
    with pytest.raises(ValueError):
        parent.to("r").emit("disconnect")


async def test_socket_operations_span_children(io):
    parent, a, b, c = await two_children(io)
    found = await parent.in_("r").fetch_sockets()
    assert sorted(s.nsp.name for s in found) == ["/dyn-1", "/dyn-2"]
    assert len(await parent.fetch_sockets()) == 3
    parent.in_("r").sockets_join(["x", "y"])
    assert sorted(s.nsp.name for s in await parent.in_("y").fetch_sockets()) == ["/dyn-1", "/dyn-2"]
    parent.sockets_leave("x")
    assert await parent.in_("x").fetch_sockets() == []
    parent.except_("r").disconnect_sockets()
    await settle()
    assert [p.type for p in b.received() if p.nsp == "/dyn-1"][-1] == PacketType.DISCONNECT
    assert len(await parent.fetch_sockets()) == 2
    parent.disconnect_sockets(close=True)
    await settle()
    assert a.conn.closed_with == c.conn.closed_with == "forced close"
    assert await parent.fetch_sockets() == []


async def test_broadcast_acks_merge_children_and_time_out_with_partial_answers(io):
    parent, a, b, c = await two_children(io)
    pending = asyncio.ensure_future(parent.timeout(2).emit_with_ack("q", 7))
    await settle()
    for client, nsp, answer in ((a, "/dyn-1", "a"), (b, "/dyn-1", "b"), (c, "/dyn-2", "c")):
        ask = await client.wait_for(lambda p, nsp=nsp: p.nsp == nsp and p.type == PacketType.EVENT and p.data[0] == "q")
        client.ack(ask.id, answer, nsp=nsp)
    assert sorted(await asyncio.wait_for(pending, 1)) == ["a", "b", "c"]

    answers = []
    parent.to("r").timeout(0.05).emit("q2", callback=lambda err, res: answers.append((err, res)))
    ask = await a.wait_for(lambda p: p.nsp == "/dyn-1" and p.type == PacketType.EVENT and p.data[0] == "q2")
    a.ack(ask.id, "only-a", nsp="/dyn-1")  # c never answers
    await asyncio.sleep(0.15)
    assert len(answers) == 1
    err, res = answers[0]
    assert isinstance(err, siopg.AckTimeoutError) and err.responses == ["only-a"] and res == ["only-a"]

    empty = io.of(lambda name, auth: False)  # a parent with no children answers at once
    assert await asyncio.wait_for(empty.timeout(1).emit_with_ack("q3"), 1) == []


@pytest.mark.parametrize("cleanup", [True, False])
async def test_empty_children_are_cleaned_up_only_when_asked(cleanup):
    io = siopg.Server(cleanup_empty_child_namespaces=cleanup)
    try:
        parent = io.of(re.compile(r"^/dyn-\d+$"))
        closed = []
        client = FakeClient(io)
        await client.connected("/dyn-1")
        await client.connected("/dyn-2")
        child = io.namespaces["/dyn-1"]
        original_close = child.adapter.close

        async def close() -> None:
            closed.append(child.name)
            await original_close()

        child.adapter.close = close
        socket = next(iter(child.sockets.values()))
        await socket.disconnect()
        await settle()
        assert ("/dyn-1" in io.namespaces) is not cleanup
        assert (child in parent.children) is not cleanup
        assert closed == (["/dyn-1"] if cleanup else [])
        assert "/dyn-2" in io.namespaces  # still has a socket
        # a later client gets a fresh child with that name (or the same one, kept)
        other = FakeClient(io)
        await other.connected("/dyn-1")
        assert (io.namespaces["/dyn-1"] is child) is not cleanup
        assert len(io.namespaces["/dyn-1"].sockets) == 1
    finally:
        await io.close()


async def test_refused_connection_cleans_up_its_fresh_child_but_not_a_busy_one():
    io = siopg.Server(cleanup_empty_child_namespaces=True)
    try:
        gate = asyncio.Event()

        async def middleware(socket, next_):
            if socket.handshake.auth.get("wait"):
                await gate.wait()
            if socket.handshake.auth.get("deny"):
                raise siopg.ConnectError("no")
            next_()

        io.of(re.compile(r"^/dyn-\d+$")).use(middleware)
        refused = FakeClient(io)
        refused.connect("/dyn-1", {"deny": True})
        await refused.wait_for(lambda p: p.type == PacketType.CONNECT_ERROR)
        await settle()
        assert "/dyn-1" not in io.namespaces
        # a child whose only connection is still in its middlewares is kept
        slow = FakeClient(io)
        slow.connect("/dyn-2", {"wait": True})
        await settle()
        quick = FakeClient(io)
        quick.connect("/dyn-2", {"deny": True})
        await quick.wait_for(lambda p: p.type == PacketType.CONNECT_ERROR)
        await settle()
        assert "/dyn-2" in io.namespaces
        gate.set()
        data = await slow.wait_for(lambda p: p.type == PacketType.CONNECT)
        assert data.nsp == "/dyn-2" and len(io.namespaces["/dyn-2"].sockets) == 1
    finally:
        await io.close()
