"""The cluster dashboard's pure parts: 8 servers' snapshots merged, and the cost with 10k sockets."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import siopg
from siopg.dashboard.cluster import Entry, health, merge
from siopg.dashboard.stats import Identity, NamespaceReading, Reading, Sampler, read


def server_sampler(i: int, clock: list[float], skew: float = 0.0) -> Sampler:
    """Server i: 10*i+1 sockets ("/" and "/chat"), i rooms, counters growing 1/s per server."""

    def reader(now: float) -> Reading:
        elapsed = int(now - 1000.0 - skew)
        counters = {
            "packets_in": 10 * elapsed, "packets_out": 20 * elapsed, "broadcasts": 0,
            "recoveries_attempted": 2 * elapsed, "recoveries_succeeded": elapsed,
            "recovery_failed_expired": elapsed if i % 2 else 0,
            "recovery_failed_offset_pruned": 0 if i % 2 else elapsed,
            "engine_connections_total": 10 * i + 1, "sessions_persisted": i,
        }
        nsps = [NamespaceReading("/", 10 * i, i), NamespaceReading("/chat", 1, 0)]
        return Reading(now, counters, {"websocket": 10 * i, "polling": 1}, nsps)

    identity = Identity(f"s{i}", worker=str(i), host=f"host{i % 2}", pid=100 + i, started=990.0 + skew,
                        heartbeat_timeout=10.0)
    return Sampler(reader, identity, clock=lambda: clock[0] + skew, step=5.0, window=600.0)


def eight_servers() -> list[Entry]:
    clock = [1000.0]
    # server 3's clock is 100 s ahead: ages are measured per server, so it still lines up
    samplers = [server_sampler(i, clock, skew=100.0 if i == 3 else 0.0) for i in range(8)]
    docs: list[dict[str, Any]] = []
    for t in range(1000, 1061):  # one sample a second for a minute
        clock[0] = float(t)
        docs = [s.sample() for s in samplers]
    # as read back from the database: JSON text, ages from the database's clock
    return [Entry(d["id"], json.loads(json.dumps(d)), heartbeat_age=1.0, stats_age=0.5) for d in docs]


def test_eight_snapshots_merge_into_cluster_totals() -> None:
    doc = merge(eight_servers(), {"rows": 5, "oldest_seconds": 3.0, "pruned_through": 0, "pruned_seconds": None})
    assert doc["server_count"] == 8
    assert [s["worker"] for s in doc["servers"]] == ["0", "2", "4", "6", "1", "3", "5", "7"]  # by host, worker
    assert all(s["health"] == "ok" for s in doc["servers"])
    assert doc["sockets"] == sum(10 * i + 1 for i in range(8)) == 288
    assert doc["rooms"] == sum(range(8))
    assert doc["namespaces"] == [{"name": "/", "sockets": 280, "rooms": 28}, {"name": "/chat", "sockets": 8, "rooms": 0}]
    assert doc["engine"] == {"open": 288, "by_transport": {"polling": 8, "websocket": 280}, "opened_total": 288}
    assert doc["rates"]["packets_in"] == 80.0 and doc["rates"]["packets_out"] == 160.0  # 8 x 10/s, 8 x 20/s
    rec = doc["recovery"]
    assert (rec["attempted"], rec["succeeded"], rec["failed"]) == (8 * 120, 8 * 60, 8 * 60)
    assert rec["causes"] == {"expired": 4 * 60, "offset_pruned": 4 * 60}
    row = next(s for s in doc["servers"] if s["id"] == "s5")
    assert (row["sockets"], row["pid"], row["uptime"]) == (51, 105, 70.5)
    assert row["recovery"]["causes"] == {"expired": 60, "offset_pruned": 0}
    assert doc["log"] == {"rows": 5, "oldest_seconds": 3.0, "pruned_through": 0, "pruned_seconds": None,
                          "pruned_total": 0}
    h = doc["history"]
    assert h["age"] == sorted(h["age"], reverse=True) and len(h["age"]) == 13  # 60 s at 5 s: 13 buckets
    assert h["sockets"] == [288] * 13  # every server's point lands in the same bucket, skew or not
    assert h["recovered"][1:] == [8.0] * 12  # 8 servers x 1 recovery/s (the first bucket has no interval)
    assert h["failed"][1:] == [8.0] * 12
    assert h["causes"] == {"expired": [0.0] + [4.0] * 12, "offset_pruned": [0.0] + [4.0] * 12}
    assert h["packets_in"][1:] == [80.0] * 12


def test_down_servers_leave_the_totals_and_stale_ones_are_flagged() -> None:
    entries = eight_servers()
    entries[0].heartbeat_age = 30.0  # past its heartbeat timeout: down
    entries[1].stats_age = 60.0  # heartbeat fine, snapshot late: stale, still counted
    entries.append(Entry("silent", None, heartbeat_age=1.0))  # alive, publishes nothing
    states = {e.id: health(e) for e in entries}
    assert (states["s0"], states["s1"], states["silent"]) == ("down", "stale", "no stats")
    doc = merge(entries)
    assert doc["server_count"] == 8  # 7 publishing + "silent"; s0 is down
    assert doc["sockets"] == 288 - 1  # s0 had 1 socket
    assert len(doc["servers"]) == 9 and doc["log"] is None


def big_server(sockets: int) -> siopg.Server:
    """A server that looks like it holds `sockets` sockets, each in its own room and "lobby"."""
    io = siopg.Server()
    nsp = io.of("/")
    for k in range(sockets):
        sid = f"sid{k}"
        nsp.sockets[sid] = SimpleNamespace(id=sid)  # type: ignore[assignment]
        nsp.adapter.add_all(sid, [sid, "lobby"])
    io._clients = {f"e{k}": SimpleNamespace(conn=SimpleNamespace(transport="websocket"))  # type: ignore[attr-defined]
                   for k in range(sockets)}
    return io


def test_snapshot_size_does_not_grow_with_sockets_and_reading_10k_is_cheap() -> None:
    sizes = {}
    for n in (10, 10_000):
        io = big_server(n)
        sampler = Sampler(lambda now, io=io: read(io, now), Identity("x"))  # type: ignore[misc]
        started = time.perf_counter()
        doc = sampler.sample()
        took = time.perf_counter() - started
        assert doc["sockets"] == n and doc["rooms"] == 1 and doc["transports"]["websocket"] == n
        sizes[n] = len(json.dumps(doc))
        if n == 10_000:
            assert took < 0.25, f"sampling 10k sockets took {took * 1000:.0f} ms"
    assert sizes[10_000] - sizes[10] < 32  # only the digits of the counts differ: aggregates, never per socket


async def test_publisher_goes_on_after_a_failing_sample() -> None:
    """A bug in sampling is logged once; the next samples are still published."""
    import asyncio

    import siopg
    from siopg.dashboard.board import Publisher

    calls: list[int] = []

    class FlakySampler:
        def sample(self) -> dict[str, object]:
            calls.append(1)
            if len(calls) <= 2:
                raise RuntimeError("sampling bug")
            return {}

    publisher = Publisher(siopg.Server(), FlakySampler(), interval=0.005)  # type: ignore[arg-type]
    publisher.start()
    try:
        for _ in range(400):
            if len(calls) >= 4:
                break
            await asyncio.sleep(0.005)
    finally:
        await publisher.stop()
    assert len(calls) >= 4
