"""Cluster operations across two siopg servers sharing Postgres, seen from the official JS client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import siopg
from siopg.server.remote_socket import RemoteSocket

from .harness import eventually


async def connect(js: Any, node: Any, label: str, **auth: Any) -> Any:
    client = js.client(label)
    state = await client.connect(node.url, transports=["websocket"], auth=auth)
    assert state["connected"], state
    client.sid = state["id"]
    return client


async def test_broadcast_across_servers(nodes: Any, js: Any) -> None:
    a, b = await nodes("A"), await nodes("B")
    ca = await connect(js, a, "ca", rooms=["red"])
    cb = await connect(js, b, "cb", rooms=["red", "muted"])
    cc = await connect(js, b, "cc")
    for c in (ca, cb, cc):
        await c.on("hello", "room", "big")
    await a.io.emit("hello", 1, {"x": [1, 2]})
    await b.io.to("red").except_("muted").emit("room", "from B")
    blob = bytes(range(256)) * 400  # 100 KB, binary
    await a.io.to("red").emit("big", blob, "é" * 10_000)
    got = {c.name: await c.wait_for("hello") for c in (ca, cb, cc)}
    offsets = {args[0][-1] for args in got.values()}
    assert all(args[0][:-1] == [1, {"x": [1, 2]}] for args in got.values())
    assert len(offsets) == 1, "one packet, one offset, on every server"
    assert (await ca.wait_for("room"))[0][:-1] == ["from B"]
    for c in (ca, cb):
        big = (await c.wait_for("big"))[0]
        assert big[0] == blob and big[1] == "é" * 10_000
    await asyncio.sleep(0.2)
    assert cb.received("room") == [] and cc.received("room") == [] and cc.received("big") == []


async def test_emit_to_a_socket_on_another_server(nodes: Any, js: Any) -> None:
    a, b = await nodes("A"), await nodes("B")
    cb = await connect(js, b, "cb")
    await cb.on("direct")
    await a.io.to(cb.sid).emit("direct", "hi")
    assert (await cb.wait_for("direct"))[0][:-1] == ["hi"]


async def test_local_and_volatile_flags(nodes: Any, js: Any) -> None:
    a, b = await nodes("A"), await nodes("B")
    ca, cb = await connect(js, a, "ca"), await connect(js, b, "cb")
    for c in (ca, cb):
        await c.on("only-a", "vol")
    await a.io.local.emit("only-a", 1)
    await a.io.volatile.emit("vol", 2)
    assert (await ca.wait_for("only-a"))[0] == [1]  # local: never leaves A, no offset
    assert (await cb.wait_for("vol"))[0] == [2]  # volatile: not recoverable, no offset
    await asyncio.sleep(0.2)
    assert cb.received("only-a") == []


async def test_broadcast_with_acks_across_servers(nodes: Any, js: Any) -> None:
    a, b = await nodes("A"), await nodes("B")
    ca, cb1, cb2 = await connect(js, a, "ca"), await connect(js, b, "cb1"), await connect(js, b, "cb2")
    for c, value in ((ca, "a"), (cb1, "b1"), (cb2, "b2")):
        await c.ack_reply("question", "value", [value])
    started = asyncio.get_running_loop().time()
    answers = await a.io.timeout(5).emit_with_ack("question", 42)
    assert sorted(answers) == ["a", "b1", "b2"]
    assert asyncio.get_running_loop().time() - started < 2, "completes as soon as every answer is in"
    # one client on B never answers: timeout with the partial answers
    silent = await connect(js, b, "silent")
    await silent.ack_reply("question", "none")
    with pytest.raises(siopg.AckTimeoutError) as err:
        await a.io.timeout(1).emit_with_ack("question", 43)
    assert sorted(err.value.responses) == ["a", "b1", "b2"]


async def test_server_count(nodes: Any) -> None:
    a = await nodes("A")
    assert await a.io.server_count() == 1
    b = await nodes("B")
    assert await a.io.server_count() == 2  # counts at once, no heartbeat needed
    assert await b.io.server_count() == 2
    await b.stop()
    assert await a.io.server_count() == 1  # a clean stop leaves at once
    c = await nodes("C")
    assert await a.io.server_count() == 2
    # C dies without a word: its heartbeats stop (timeout 2.5 s in the harness)
    for task in c.factory.cluster._tasks:
        task.cancel()
    await eventually(lambda: _count_is(a, 1), timeout=8)


async def _count_is(node: Any, n: int) -> bool:
    return await node.io.server_count() == n


async def test_fetch_sockets_and_remote_operations(nodes: Any, js: Any) -> None:
    a, b = await nodes("A"), await nodes("B")
    ca = await connect(js, a, "ca", rooms=["r1"], tag="x")
    cb = await connect(js, b, "cb", rooms=["r1"], tag="y")
    cb2 = await connect(js, b, "cb2", rooms=["r2"])
    sockets = await a.io.in_("r1").fetch_sockets()
    assert sorted(s.id for s in sockets) == sorted([ca.sid, cb.sid])
    remote = next(s for s in sockets if s.id == cb.sid)
    assert isinstance(remote, RemoteSocket)
    assert remote.data == {"node": "B", "tag": "y"}
    assert remote.rooms == {cb.sid, "r1"}
    assert remote.handshake["auth"]["tag"] == "y"
    await cb.on("to-remote")
    await remote.emit("to-remote", 5)
    assert (await cb.wait_for("to-remote"))[0][:-1] == [5]
    # join / leave through a RemoteSocket and through the operator
    await remote.join("vip")
    await a.io.in_("r2").sockets_join("vip")
    await eventually(lambda: b.adapter().rooms.get("vip") == {cb.sid, cb2.sid})
    await a.io.in_("vip").sockets_leave("r1")
    await eventually(lambda: b.adapter().rooms.get("r1") is None)
    assert len(await a.io.in_("vip").fetch_sockets()) == 2
    # disconnect across servers
    await cb2.on("disconnect")
    await a.io.in_("r2").disconnect_sockets()
    await eventually(lambda: cb2.received("disconnect", via="life"))
    assert [s.id for s in await a.io.fetch_sockets()].count(cb2.sid) == 0


async def test_server_side_emit(nodes: Any) -> None:
    a, b, c = await nodes("A"), await nodes("B"), await nodes("C")
    seen: list[Any] = []
    b.io.on("note", lambda *args: seen.append(args))
    a.io.server_side_emit("note", 1, "two")
    await eventually(lambda: seen == [(1, "two")])
    answers = await a.io.server_side_emit_with_ack("whoami", 7, timeout=3)
    assert sorted(x["node"] for x in answers) == ["B", "C"]
    assert all(x["args"] == [7] for x in answers)
    # a server that never answers: timeout, not a hang
    c.io.off("whoami")
    c.io.on("whoami", lambda *args, ack=None: None)
    with pytest.raises(siopg.AckTimeoutError):
        await a.io.server_side_emit_with_ack("whoami", 8, timeout=1)


async def test_dynamic_namespace_and_injection_looking_names(nodes: Any, js: Any) -> None:
    a, b = await nodes("A"), await nodes("B")
    evil_nsp = "/x'); DROP TABLE packets; --"
    room = "'; DELETE FROM sessions; --\""
    for node in (a, b):
        node.io.of(evil_nsp).on("connection", lambda s: s.join(room))
    cb = js.client("cb")
    state = await cb.connect(b.url + evil_nsp, transports=["websocket"])
    assert state["connected"]
    await cb.on("ev")
    await eventually(lambda: b.adapter(evil_nsp).rooms.get(room))
    await a.io.of(evil_nsp)._start_init()
    await a.io.of(evil_nsp).to(room).emit("ev", room)
    assert (await cb.wait_for("ev"))[0][:-1] == [room]


async def test_garbage_notifications_on_the_channel(nodes: Any, js: Any, conn: Any, schema: str) -> None:
    a, b = await nodes("A"), await nodes("B")
    cb = await connect(js, b, "cb")
    await cb.on("ev")
    for payload in ("garbage", "9" * 30, '{"type": 3}', "1e9", "-5", "  "):
        await conn.execute("SELECT pg_notify($1, $2)", "siopg#" + schema, payload)
    await a.io.emit("ev", "still fine")
    assert (await cb.wait_for("ev"))[0][:-1] == ["still fine"]
    assert b.factory.cluster.listener.bad_notifications >= 5
