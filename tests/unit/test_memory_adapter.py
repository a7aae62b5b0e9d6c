"""InMemoryAdapter on its own: rooms index and events, recipients, the recovery log and sessions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from siopg.adapter.base import BroadcastFlags, BroadcastOptions, Session
from siopg.adapter.errors import RecoveryRefused
from siopg.adapter.memory import InMemoryAdapter
from siopg.parser import Packet, PacketType
from siopg.server.options import Recovery


@dataclass
class FakeNamespace:
    """The NamespaceLike an adapter sees, recording deliveries."""

    name: str = "/"
    recovery: Any = None
    delivered: list[tuple[Packet, list[str]]] = field(default_factory=list)
    acks: dict[str, Any] = field(default_factory=dict)

    def deliver(self, packet: Packet, socket_ids: Any, flags: BroadcastFlags) -> None:
        self.delivered.append((packet, sorted(socket_ids)))

    def deliver_with_ack(self, packet: Packet, socket_ids: Any, flags: BroadcastFlags, ack: Any) -> int:
        ids = sorted(socket_ids)
        for sid in ids:
            self.acks[sid] = ack
        return len(ids)

    def local_socket(self, sid: str) -> Any:
        return sid

    def on_server_side_emit(self, args: list[Any], ack: Any) -> None:  # pragma: no cover
        pass


def opts(rooms=(), except_=(), **flags: Any) -> BroadcastOptions:
    return BroadcastOptions(frozenset(rooms), frozenset(except_), BroadcastFlags(**flags))


def event(*data: Any, ack_id: int | None = None) -> Packet:
    return Packet(PacketType.EVENT, "/", list(data), ack_id)


@pytest.fixture
def adapter() -> InMemoryAdapter:
    a = InMemoryAdapter(FakeNamespace())
    for sid, rooms in {"a": ["a", "red"], "b": ["b", "red", "blue"], "c": ["c", "blue"]}.items():
        a.add_all(sid, rooms)
    return a


def test_rooms_index_and_events() -> None:
    a = InMemoryAdapter(FakeNamespace())
    events: list[tuple[Any, ...]] = []
    for name in ("create-room", "delete-room", "join-room", "leave-room"):
        a.on(name, lambda *args, name=name: events.append((name, *args)))
    a.add_all("s1", ["s1", "r"])
    a.add_all("s1", ["r"])  # already in: no second event
    a.add_all("s2", ["r"])
    assert a.rooms == {"s1": {"s1"}, "r": {"s1", "s2"}}
    assert a.socket_rooms("s1") == {"s1", "r"}
    a.delete("s1", "r")
    a.delete_all("s2")
    assert a.rooms == {"s1": {"s1"}} and "s2" not in a.sids
    assert events == [
        ("create-room", "s1"), ("join-room", "s1", "s1"),
        ("create-room", "r"), ("join-room", "r", "s1"),
        ("join-room", "r", "s2"),
        ("leave-room", "r", "s1"),
        ("leave-room", "r", "s2"), ("delete-room", "r"),
    ]
    with pytest.raises(ValueError):
        a.on("no-such-event", print)


def test_recipients(adapter: InMemoryAdapter) -> None:
    assert sorted(adapter.local_recipients(opts())) == ["a", "b", "c"]
    assert sorted(adapter.local_recipients(opts(["red"]))) == ["a", "b"]
    assert sorted(adapter.local_recipients(opts(["red", "blue"]))) == ["a", "b", "c"]
    assert sorted(adapter.local_recipients(opts(["red"], ["blue"]))) == ["a"]
    assert sorted(adapter.local_recipients(opts([], ["a"]))) == ["b", "c"]
    assert list(adapter.local_recipients(opts(["nobody"]))) == []


async def test_broadcast_without_recovery_adds_no_offset(adapter: InMemoryAdapter) -> None:
    packet = event("x", 1)
    adapter.broadcast(packet, opts(["blue"]))
    (sent, ids), = adapter.nsp.delivered
    assert sent.data == ["x", 1] and ids == ["b", "c"]
    assert adapter.current_offset() is None
    assert await adapter.server_count() == 1
    assert sorted(await adapter.fetch_sockets(opts(["red"]))) == ["a", "b"]


def recovering(window: float = 120.0) -> InMemoryAdapter:
    return InMemoryAdapter(FakeNamespace(recovery=Recovery(max_disconnection_duration=window)))


async def test_offsets_only_for_eligible_packets_and_input_untouched() -> None:
    a = recovering()
    a.add_all("s", ["s"])
    original = event("x")
    a.broadcast(original, opts())
    a.broadcast(event("acked", ack_id=3), opts())
    a.broadcast(event("v"), opts(volatile=True))
    a.broadcast(Packet(PacketType.DISCONNECT, "/", None, None), opts())
    sent = [p for p, _ in a.nsp.delivered]
    assert original.data == ["x"]  # the caller's packet is not mutated
    assert sent[0].data == ["x", "1"]
    assert sent[1].data == ["acked"] and sent[2].data == ["v"]
    assert a.current_offset() == "1" and len(a._log) == 1


async def refused(restore: Any) -> str:
    """The cause of the RecoveryRefused that awaiting `restore` raises."""
    with pytest.raises(RecoveryRefused) as info:
        await restore
    return info.value.cause


async def test_restore_with_offset_filters_rooms_and_consumes_session() -> None:
    a = recovering()
    before = a.current_offset()
    await a.persist_session(Session("s", "p", "/", ["s", "red"], {"k": 1}, offset=before))
    a.broadcast(event("to-red"), opts(["red"]))
    a.broadcast(event("to-blue"), opts(["blue"]))
    a.broadcast(event("all-but-red"), opts([], ["red"]))
    a.broadcast(event("all"), opts())
    restored = await a.restore_session("p", "1")  # the client got "to-red" already
    assert restored is not None
    assert (restored.sid, restored.pid, restored.rooms, restored.data) == ("s", "p", ["s", "red"], {"k": 1})
    assert [p.data for p in restored.missed_packets] == [["all", "4"]]
    assert await refused(a.restore_session("p", "1")) == "unknown_session"  # consumed: never replayed twice


async def test_restore_without_offset_uses_persisted_head() -> None:
    a = recovering()
    a.broadcast(event("before-connect"), opts())
    head = a.current_offset()
    a.broadcast(event("while-connected"), opts(["s"]))
    await a.persist_session(Session("s", "p", "/", ["s"], None, offset=head))
    a.broadcast(event("after"), opts())
    restored = await a.restore_session("p", None)
    assert restored is not None
    assert [p.data[0] for p in restored.missed_packets] == ["while-connected", "after"]


@pytest.mark.parametrize("offset", ["999", "abc", "-5"])
async def test_restore_with_unknown_offset_is_fresh(offset: str) -> None:
    a = recovering()
    a.broadcast(event("x"), opts())
    await a.persist_session(Session("s", "p", "/", ["s"], None, offset="0"))
    assert await refused(a.restore_session("p", offset)) == "offset_invalid"
    assert await refused(a.restore_session("unknown-pid", "0")) == "unknown_session"


async def test_expiry_of_sessions_and_log() -> None:
    a = recovering(window=0.05)
    a._dead_transport = 0.0  # no server pings here: the log keeps just the window
    await a.persist_session(Session("s", "p", "/", ["s"], None, offset="0"))
    for i in range(100):
        a.broadcast(event("x", i), opts())
    await asyncio.sleep(0.08)
    a.broadcast(event("fresh"), opts())
    assert len(a._log) == 1  # expired entries pruned from the head on append
    assert await refused(a.restore_session("p", "0")) == "expired"
    # (a base offset older than the log's start: tests/hostile/test_fix3_quiet.py)


async def test_sessions_prune_in_time_order() -> None:
    a = recovering(window=0.05)
    await a.persist_session(Session("s1", "p1", "/", [], None, offset="0"))
    await asyncio.sleep(0.08)
    await a.persist_session(Session("s2", "p2", "/", [], None, offset="0"))
    assert list(a._sessions) == ["p2"]


async def test_broadcast_with_ack_counts_and_server_side_emit() -> None:
    a = recovering()
    a.add_all("x", ["x"])
    a.add_all("y", ["y"])
    counts: list[int] = []
    a.broadcast_with_ack(event("q"), opts(), counts.append, lambda r: None)
    assert counts == [2] and set(a.nsp.acks) == {"x", "y"}
    assert a._log == type(a._log)()  # acked broadcasts are never logged
    got: list[Any] = []
    a.server_side_emit(["ev", 1], got.append)
    await asyncio.sleep(0)
    assert got == [[]]


async def test_join_offsets_bound_the_replay() -> None:
    """Issue 7 finding 5: nothing from before the session, nothing to a room from before the
    socket joined it; the except check counts only rooms joined before the packet too."""
    a = recovering()
    a.broadcast(event("before-session"), opts())  # 1
    a.add_all("s", ["s"])  # session start: 1
    a.broadcast(event("to-red-before-join"), opts(["red"]))  # 2
    a.add_all("s", ["red"])  # joined red at 2
    a.broadcast(event("to-red"), opts(["red"]))  # 3
    a.broadcast(event("all-but-blue"), opts([], ["blue"]))  # 4: s joins blue only afterwards
    a.add_all("s", ["blue", "red"])  # blue at 4; red keeps its first join offset
    a.broadcast(event("all-but-blue-2"), opts([], ["blue"]))  # 5: s is in blue now
    assert a.join_offsets("s") == {"s": "1", "red": "2", "blue": "4"}
    session = Session("s", "p", "/", ["s", "red", "blue"], None, offset="1", join_offsets=a.join_offsets("s"))
    a.delete_all("s")
    assert a.join_offsets("s") is None and a.index.joins is not None and len(a.index.joins) == 0
    await a.persist_session(session)
    restored = await a.restore_session("p", "0")  # older than the session: clamped to 1
    assert restored is not None
    assert [p.data[0] for p in restored.missed_packets] == ["to-red", "all-but-blue"]
    assert restored.join_offsets == {"s": "1", "red": "2", "blue": "4"}


async def test_restored_rooms_keep_their_join_offsets_and_leave_forgets() -> None:
    a = recovering()
    a.broadcast(event("x"), opts())
    a.broadcast(event("y"), opts())
    a.add_all("s", ["s", "red"])
    a.restore_join_offsets("s", {"s": "0", "red": "1", "gone": "0"})
    assert a.join_offsets("s") == {"s": "0", "red": "1"}  # rooms it is not in are ignored
    a.delete("s", "red")
    assert a.join_offsets("s") == {"s": "0"}
    assert InMemoryAdapter(FakeNamespace()).join_offsets("s") is None  # recovery off: not tracked
