"""The parts of the Postgres adapter's PgCluster, each on its own (no Postgres: a fake store)."""

from __future__ import annotations

import asyncio
from typing import Any

from siopg.adapter.cluster import ClusterMessage, MessageType
from siopg.adapter.postgres import codec
from siopg.adapter.postgres.membership import Membership
from siopg.adapter.postgres.pruner import Pruner
from siopg.adapter.postgres.router import LogRouter
from siopg.adapter.postgres.sessions import Barrier, Forget, Persist, SessionWriter
from siopg.adapter.postgres.store import LogStats, PruneResult


class FakeStore:
    """Records what the parts ask of the store; `down` makes every call fail like an outage."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.down = False

    def _call(self, *args: Any) -> None:
        if self.down:
            raise ConnectionRefusedError("postgres is down")
        self.calls.append(args)

    async def persist(self, pid: str, sid: str, *rest: Any) -> None:
        self._call("persist", pid)

    async def snapshot(self, rows: list[Any], forget: list[str], owner: str) -> None:
        self._call("snapshot", [r[0] for r in rows], forget)

    async def heartbeat(self, uid: str, namespaces: list[str]) -> list[str]:
        self._call("heartbeat", tuple(namespaces))
        return [n for n in namespaces if "bad" in n]

    async def alive(self, timeout: float) -> dict[str, set[str]]:
        self._call("alive")
        return {"/": {"me", "other"}}

    async def server_count(self, nsp: str, timeout: float) -> int:
        self._call("count", nsp)
        return 2

    async def prune(self, retention: float, node_ttl: float) -> PruneResult:
        self._call("prune", retention, node_ttl)
        return PruneResult(packets=3)  # type: ignore[call-arg]

    async def log_stats(self) -> LogStats:
        return LogStats()


def persist(pid: str, loop: asyncio.AbstractEventLoop) -> Persist:
    return Persist(pid, "sid-" + pid, "/", ["r"], b"", 1, None, 60.0, loop.time(), loop.create_future())


async def test_session_writer_applies_typed_ops_in_order_and_a_persist_cancels_its_forget() -> None:
    errors: list[BaseException] = []
    writer = SessionWriter("me", snapshot_interval=0.05, report=errors.append)
    store = FakeStore()
    task = writer.start(store)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    try:
        writer.queue(Forget(adapter=None, sid="s1", pid="p1", at=loop.time()))  # type: ignore[arg-type]
        first, second = persist("p1", loop), persist("p2", loop)
        writer.queue(first)
        writer.queue(second)
        await asyncio.wait_for(writer.barrier(), 2)
        assert first.done.done() and second.done.done()
        assert store.calls == [("persist", "p1"), ("persist", "p2")]  # p1's forget is gone
        assert await writer.wait_idle(1) and errors == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_session_writer_keeps_unwritten_ops_through_an_outage() -> None:
    errors: list[BaseException] = []
    writer = SessionWriter("me", snapshot_interval=0.05, report=errors.append)
    store = FakeStore()
    store.down = True
    task = writer.start(store)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    try:
        op = persist("p1", loop)
        writer.queue(op)
        await asyncio.wait_for(op.done, 2)  # released at once: nobody waits for an outage
        assert len(errors) == 1 and store.calls == []
        store.down = False
        done: asyncio.Future[None] = loop.create_future()
        writer.queue(Barrier(done))
        await asyncio.wait_for(done, 2)
        assert store.calls == [("persist", "p1")]  # written once Postgres is back
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_membership_counts_and_falls_back_to_the_last_heartbeat() -> None:
    errors: list[BaseException] = []
    members = Membership("me", heartbeat_timeout=10, report=errors.append)
    store = members.store = FakeStore()  # type: ignore[assignment]
    await members.join(["/", "/bad"])
    assert len(errors) == 1 and "cannot be heartbeated" in str(errors[0])
    await members.join(["/bad"])
    assert len(errors) == 1  # reported once per namespace
    assert await members.heartbeat(["/"]) == {"/": {"me", "other"}}
    assert await members.others("/") == {"other"} and await members.count("/") == 2
    store.down = True
    assert await members.others("/") == {"other"}  # the last view
    assert await members.count("/") == 2 and await members.count("/none") == 1
    assert len(errors) == 4  # each failed query reported


async def test_pruner_retention_and_one_pass() -> None:
    windows: list[float] = []
    pruner = Pruner(None, heartbeat_timeout=10, windows=lambda: windows)
    assert pruner.retention() == 130.0  # default window + heartbeat timeout
    windows.extend([60.0, 300.0])
    assert pruner.retention() == 310.0
    assert Pruner(5.0, 10, lambda: windows).retention() == 15.0
    store = pruner.store = FakeStore()  # type: ignore[assignment]
    await pruner.prune()
    assert store.calls == [("prune", 310.0, 370.0)] and pruner.pruned_packets == 3


def test_router_routes_rows_to_their_namespace_and_skips_others_targets() -> None:
    got: list[tuple[str, Any, str | None]] = []

    class Sink:
        def __init__(self, name: str) -> None:
            self.name = name

        def on_message(self, message: ClusterMessage, offset: str | None = None) -> None:
            got.append((self.name, message.type, offset))

    router = LogRouter("me", {"/": Sink("/")})

    def row(id_: int, nsp: str, target: str | None = None) -> dict[str, Any]:
        message = ClusterMessage(MessageType.SERVER_SIDE_EMIT, "x", nsp, {"packet": ["ev"]}, target=target)
        encoded = codec.encode(message)
        return {"id": id_, "kind": encoded.kind, "uid": "x", "nsp": nsp, "rooms": [], "except_rooms": [],
                "recoverable": False, "target": target, "payload": encoded.payload, "payload_json": None}

    router.on_row(row(1, "/"))
    router.on_row(row(2, "/other"))  # not served here
    router.on_row(row(3, "/", target="someone-else"))
    router.on_row(row(4, "/", target="me"))
    router.on_row({"id": 5, "nsp": "/", "target": None, "kind": 9999})  # undecodable: skipped
    assert got == [("/", MessageType.SERVER_SIDE_EMIT, "1"), ("/", MessageType.SERVER_SIDE_EMIT, "4")]
