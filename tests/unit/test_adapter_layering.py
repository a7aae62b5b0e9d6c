"""The adapter layer stands on its own: plain socket details from fetch_sockets (the server
wraps them), errors defined below the server, the rooms index by composition (the import
direction itself is checked for the whole package by test_layers.py)."""

from __future__ import annotations

from pathlib import Path

import siopg
from siopg.adapter.base import BroadcastOptions, SocketDetails
from siopg.adapter.memory import InMemoryAdapter
from siopg.server.remote_socket import RemoteSocket

ADAPTER_DIR = Path(siopg.__file__).parent / "adapter"
ABOVE = ("siopg.server", "siopg.emitter", "siopg.metrics", "siopg.dashboard", "siopg.supervisor", "siopg.cli")








def test_errors_keep_their_public_names() -> None:
    from siopg.adapter.base import RecoveryUnavailable as FromBase
    from siopg.adapter.errors import AckTimeoutError, RecoveryUnavailable
    from siopg.server.errors import AckTimeoutError as FromServer

    assert siopg.AckTimeoutError is AckTimeoutError is FromServer
    assert FromBase is RecoveryUnavailable


class _Nsp:
    name = "/"
    recovery = None

    def local_socket(self, sid: str) -> str:
        return f"local:{sid}"


class _RemoteToo(InMemoryAdapter):
    async def fetch_sockets(self, opts: BroadcastOptions) -> list[object]:
        local = await super().fetch_sockets(opts)
        return local + [SocketDetails("r1", {"auth": {}}, {"r1", "room"}, {"k": 1})]


async def test_fetch_sockets_wraps_socket_details_in_remote_socket() -> None:
    io = siopg.Server(adapter=_RemoteToo)
    try:
        found = await io.fetch_sockets()
        (remote,) = [s for s in found if isinstance(s, RemoteSocket)]
        assert (remote.id, remote.rooms, remote.data, remote.handshake) == ("r1", {"r1", "room"}, {"k": 1}, {"auth": {}})
        assert remote.nsp is io.sockets
        assert remote.timeout(2)._flags.timeout == 2 and remote.timeout(2).id == "r1"
    finally:
        await io.close()


def test_remote_socket_still_accepts_the_wire_dict() -> None:
    remote = RemoteSocket(_Nsp(), {"id": "x", "handshake": None, "rooms": ["a"], "data": 3})
    assert (remote.id, remote.handshake, remote.rooms, remote.data) == ("x", {}, {"a"}, 3)


def test_cluster_adapter_composes_the_rooms_index_instead_of_inheriting_memory() -> None:
    """One join-offset implementation, the head supplied by each adapter; no in-memory
    recovery log in a cluster adapter."""
    from siopg.adapter.cluster import ClusterAdapter
    from siopg.adapter.rooms import RoomIndex
    from siopg.server.options import Recovery

    class Head(ClusterAdapter):
        head = 7

        def _log_head(self) -> int:
            return self.head

    nsp = _Nsp()
    nsp.recovery = Recovery()  # type: ignore[assignment]
    cluster = Head(nsp, "uid")
    assert not isinstance(cluster, InMemoryAdapter) and not hasattr(cluster, "_log")
    assert isinstance(cluster.index, RoomIndex) and cluster.rooms is cluster.index.rooms
    cluster.add_all("s", ["s", "red"])
    cluster.head = 9
    cluster.add_all("s", ["red", "blue"])  # red keeps its first join
    assert cluster.join_offsets("s") == {"s": "7", "red": "7", "blue": "9"}
    cluster.restore_join_offsets("s", {"s": "3", "gone": "1"})
    assert cluster.join_offsets("s") == {"s": "3", "red": "7", "blue": "9"}
    cluster.delete_all("s")
    assert cluster.join_offsets("s") is None
    memory = InMemoryAdapter(nsp)
    assert type(memory.index.joins) is type(cluster.index.joins)
