"""Connection state recovery on the socket side (fake engine connections, in-memory adapter)."""

from __future__ import annotations

import asyncio

import pytest

import siopg
from siopg.adapter.base import RecoveryUnavailable, Session
from siopg.parser import Packet, PacketType
from siopg.server.testing import FakeClient

from .helpers import settle


def make_server(**recovery) -> siopg.Server:
    return siopg.Server(connection_state_recovery=siopg.Recovery(**recovery))


@pytest.fixture
async def io():
    server = make_server()
    yield server
    await server.close()


class Tracker:
    """Records connections on a server and what the client side has seen."""

    def __init__(self, io):
        self.sockets = []
        io.on("connection", self.sockets.append)


def offsets_of(client: FakeClient) -> list[str]:
    return [data[-1] for data in client.events()]


async def test_connect_reply_has_pid_and_events_carry_offsets(io):
    t = Tracker(io)
    client = FakeClient(io)
    reply = await client.connected()
    assert set(reply) == {"sid", "pid"} and reply["pid"] != reply["sid"]
    await settle()
    io.emit("a", 1)
    t.sockets[0].emit("b", 2)  # socket.emit goes through the adapter too
    io.volatile.emit("volatile")  # not eligible: no offset
    events = client.events()
    assert events[0][:2] == ["a", 1] and events[1][:2] == ["b", 2]
    assert int(events[1][2]) > int(events[0][2])  # monotonic offsets, as strings
    assert events[2] == ["volatile"]


async def test_restore_after_transport_close(io):
    t = Tracker(io)
    mw_calls = []
    io.use(lambda s, next_: (mw_calls.append(s.id), next_()))
    first = FakeClient(io)
    reply = await first.connected()
    await settle()
    old = t.sockets[0]
    old.join("room")
    old.data["user"] = "ann"
    io.emit("seen")
    offset = offsets_of(first)[-1]
    first.conn.drop("transport close")
    await settle()  # persist runs as a task
    io.to("room").emit("m1")
    io.emit("m2")
    io.to("other").emit("m3")
    io.except_("room").emit("m4")

    second = FakeClient(io)
    second.connect("/", {"pid": reply["pid"], "offset": offset})
    await settle()
    packets = second.received()
    assert packets[0].type == PacketType.CONNECT
    assert packets[0].data == {"sid": reply["sid"], "pid": reply["pid"]}
    assert [p.data[0] for p in packets[1:]] == ["m1", "m2"]  # missed packets right after CONNECT
    assert all(isinstance(p.data[-1], str) for p in packets[1:])  # still carrying their offsets
    restored = t.sockets[1]
    assert restored.recovered and restored.id == old.id
    assert restored.rooms == {old.id, "room"} and restored.data == {"user": "ann"}
    assert len(mw_calls) == 1  # skip_middlewares
    assert io.metrics.recoveries_succeeded == 1
    assert restored.recovery_failure is None and t.sockets[0].recovery_failure is None
    assert io.metrics.packets_replayed == 2
    assert io.metrics.disconnections["transport close"] == 1


async def test_restore_without_offset_gh4888(io):
    """The client never received an event (no offset) yet still recovers its session."""
    t = Tracker(io)
    first = FakeClient(io)
    reply = await first.connected()
    await settle()
    t.sockets[0].join("room")
    first.conn.drop("ping timeout")
    await settle()
    io.to("room").emit("missed", 1)
    second = FakeClient(io)
    second.connect("/", {"pid": reply["pid"]})
    await settle()
    packets = second.received()
    assert packets[0].data["sid"] == reply["sid"]
    assert [p.data[:2] for p in packets[1:]] == [["missed", 1]]
    assert t.sockets[1].recovered


async def test_no_double_replay_and_session_is_consumed(io):
    Tracker(io)  # records events; unused here but keeps the setup identical
    first = FakeClient(io)
    reply = await first.connected()
    await settle()
    first.conn.drop("transport close")
    await settle()
    io.emit("missed")
    second = FakeClient(io)
    second.connect("/", {"pid": reply["pid"]})
    await settle()
    assert [d[0] for d in second.events()] == ["missed"]
    # the restored socket drops before receiving anything new, then comes back without offset
    second.conn.drop("transport close")
    await settle()
    fourth = FakeClient(io)
    fourth.connect("/", {"pid": reply["pid"]})
    await settle()
    packets = fourth.received()
    assert packets[0].data["sid"] == reply["sid"]
    assert packets[1:] == []  # "missed" was replayed once already: not again


@pytest.mark.parametrize("how", ["client namespace disconnect", "server namespace disconnect", "parse error"])
async def test_unrecoverable_reasons_do_not_persist(io, how):
    t = Tracker(io)
    first = FakeClient(io)
    reply = await first.connected()
    await settle()
    if how == "client namespace disconnect":
        first.send(Packet(PacketType.DISCONNECT, "/", None, None))
    elif how == "server namespace disconnect":
        t.sockets[0].disconnect()
    else:
        first.conn.on_message("9garbage")
    await settle()
    second = FakeClient(io)
    second.connect("/", {"pid": reply["pid"], "offset": "0"})
    await settle()
    assert second.received()[0].data["sid"] != reply["sid"]
    assert not t.sockets[-1].recovered
    assert t.sockets[-1].recovery_failure == "unknown_session"  # never persisted
    assert io.metrics.recovery_failed_unknown_session == 1
    assert io.metrics.disconnections[how] == 1


async def test_expired_session_gives_fresh_socket():
    io = make_server(max_disconnection_duration=0.03)
    t = Tracker(io)
    try:
        first = FakeClient(io)
        reply = await first.connected()
        await settle()
        first.conn.drop("transport close")
        await asyncio.sleep(0.06)
        second = FakeClient(io)
        second.connect("/", {"pid": reply["pid"], "offset": "0"})
        await settle()
        assert second.received()[0].data["sid"] != reply["sid"]
        assert t.sockets[-1].recovery_failure == "expired"
        assert io.metrics.recovery_failed_expired == 1
        assert io.metrics.recoveries_attempted == 1 and io.metrics.recoveries_succeeded == 0
    finally:
        await io.close()


async def test_unknown_offset_gives_fresh_socket(io):
    t = Tracker(io)
    first = FakeClient(io)
    reply = await first.connected()
    await settle()
    first.conn.drop("transport close")
    await settle()
    second = FakeClient(io)
    second.connect("/", {"pid": reply["pid"], "offset": "999999"})  # never handed out
    await settle()
    assert second.received()[0].data["sid"] != reply["sid"]
    assert t.sockets[-1].recovery_failure == "offset_invalid"
    assert io.metrics.recovery_failed_offset_invalid == 1


async def test_recovery_refused_by_a_limit_is_counted():
    io = siopg.Server(connection_state_recovery=siopg.Recovery(), max_namespaces_per_connection=1)
    io.of("/other").on("connection", lambda s: None)
    try:
        client = FakeClient(io)
        await client.connected()
        client.connect("/other", {"pid": "a-pid-from-before", "offset": "1"})
        await settle()
        assert client.received()[-1].type == PacketType.CONNECT_ERROR
        assert io.metrics.recovery_failed_limit == 1 and io.metrics.recoveries_attempted == 1
    finally:
        await io.close()


async def test_unreachable_store_counts_unavailable():
    class Down(siopg.InMemoryAdapter):
        async def restore_session(self, pid, offset):
            raise RecoveryUnavailable("down")

    io = siopg.Server(connection_state_recovery=siopg.Recovery(), adapter=Down)
    try:
        client = FakeClient(io)
        client.connect("/", {"pid": "p", "offset": "1"})
        await settle()
        assert client.conn.closed_with == "forced close"
        assert io.metrics.recovery_failed_unavailable == 1
    finally:
        await io.close()


async def test_stale_transport_does_not_tear_down_restored_socket_gh4880(io):
    t = Tracker(io)
    disconnects = []
    io.on("connection", lambda s: s.on("disconnect", lambda r: disconnects.append((s, r))))
    stale = FakeClient(io)
    reply = await stale.connected()
    await settle()
    old = t.sockets[0]
    old.join("room")
    # the session got persisted (e.g. by another process or a late engine report) while this
    # process still holds the old socket
    await io.sockets.adapter.persist_session(
        Session(sid=old.id, pid=reply["pid"], namespace="/", rooms=[old.id, "room"], data={}, offset="0")
    )
    fresh = FakeClient(io)
    fresh.connect("/", {"pid": reply["pid"]})
    await settle()
    restored = t.sockets[1]
    assert restored.recovered and restored.id == old.id
    assert io.sockets.sockets[old.id] is restored
    assert [(s, r) for s, r in disconnects] == [(old, "forced server close")]  # superseded once
    assert stale.conn.closed_with == "forced close"  # the superseded connection is closed
    stale.conn.drop("ping timeout")  # the old transport times out only now
    await settle()
    assert io.sockets.sockets.get(old.id) is restored
    assert restored.connected and restored.rooms == {old.id, "room"}
    assert [(s, r) for s, r in disconnects] == [(old, "forced server close")]  # nothing more
    io.to("room").emit("still-here")
    assert fresh.events("still-here")


async def test_middlewares_run_when_not_skipped_and_buffer_deliveries():
    io = make_server(skip_middlewares=False)
    gate = asyncio.Event()
    calls = []

    async def slow(socket, next_):
        calls.append(socket.recovered)
        if socket.recovered:
            await gate.wait()
        next_()

    io.use(slow)
    t = Tracker(io)
    try:
        first = FakeClient(io)
        reply = await first.connected()
        await settle()
        t.sockets[0].join("room")
        first.conn.drop("transport close")
        await settle()
        second = FakeClient(io)
        second.connect("/", {"pid": reply["pid"]})
        await settle()
        io.to("room").emit("during-middleware")  # the restored socket is in its rooms already
        gate.set()
        await settle()
        packets = second.received()
        assert packets[0].type == PacketType.CONNECT
        assert [p.data[0] for p in packets[1:]] == ["during-middleware"]
        assert calls == [False, True]
    finally:
        await io.close()


async def test_shutdown_persists_sessions():
    io = make_server()
    first = FakeClient(io)
    reply = await first.connected()
    await settle()
    adapter = io.sockets.adapter
    await io.close()
    assert io.metrics.sessions_persisted == 1
    assert reply["pid"] not in adapter._sessions  # adapter.close() released its state


async def test_quiet_detach_when_restored_id_is_still_held_locally(io):
    """A session restored (e.g. from another server's persist) while a socket with the same
    id lingers here under another pid: the old one is detached without events."""
    t = Tracker(io)
    disconnects = []
    io.on("connection", lambda s: s.on("disconnect", lambda r: disconnects.append(r)))
    stale = FakeClient(io)
    await stale.connected()
    await settle()
    old = t.sockets[0]
    await io.sockets.adapter.persist_session(
        Session(sid=old.id, pid="another-pid", namespace="/", rooms=[old.id], data={}, offset="0")
    )
    fresh = FakeClient(io)
    fresh.connect("/", {"pid": "another-pid"})
    await settle()
    restored = t.sockets[1]
    assert restored.id == old.id and io.sockets.sockets[old.id] is restored
    stale.conn.drop("transport close")
    await settle()
    assert disconnects == [] and restored.connected and restored.rooms == {old.id}


async def test_reconnect_before_old_transport_is_noticed_takes_over(io):
    """The client reconnects while this server still holds its old (dead) connection."""
    t = Tracker(io)
    reasons = []
    io.on("connection", lambda s: s.on("disconnect", lambda r: reasons.append((s, r))))
    old_client = FakeClient(io)
    reply = await old_client.connected()
    await settle()
    old = t.sockets[0]
    old.join("room")
    io.to("room").emit("got-it")
    offset = offsets_of(old_client)[-1]
    io.to("room").emit("lost-in-dead-transport")
    new_client = FakeClient(io)
    new_client.connect("/", {"pid": reply["pid"], "offset": offset})
    await settle()
    await settle()
    packets = new_client.received()
    assert packets[0].data == {"sid": reply["sid"], "pid": reply["pid"]}
    assert [p.data[0] for p in packets[1:]] == ["lost-in-dead-transport"]
    restored = t.sockets[1]
    assert restored.recovered and restored.rooms == {old.id, "room"}
    assert reasons == [(old, "forced server close")]
    assert old_client.conn.closed_with == "forced close"  # closed, so a live client notices
    old_client.conn.drop("ping timeout")  # noticed only now: nothing more happens
    await settle()
    assert io.sockets.sockets[old.id] is restored and restored.connected
    assert reasons == [(old, "forced server close")]


async def test_shutdown_persists_before_clients_are_told():
    """A client told "server shutting down" may reconnect elsewhere at once: its session must
    be stored before its connection closes, and only once."""
    from siopg.adapter.memory import InMemoryAdapter

    order = []
    clients = []

    class Recording(InMemoryAdapter):
        async def persist_session(self, session):
            order.append(("persist", session.sid, [c.closed for c in server_side]))
            await super().persist_session(session)

    io = siopg.Server(connection_state_recovery=siopg.Recovery(), adapter=Recording)
    for _ in range(2):
        client = FakeClient(io)
        await client.connected()
        clients.append(client)
    server_side = [io._clients[c.conn.sid] for c in clients]
    await settle()
    await io.close()
    assert len(order) == 2
    assert all(closed == [False, False] for _, _, closed in order)  # nobody told yet
    assert io.metrics.sessions_persisted == 2
