"""Counting what each client got against what the log holds: the one place every fault
scenario's verdict comes from.

Truth is the packet log itself (read from Postgres directly, not through the faulty proxy):
every recoverable `tick` row is an event every client must receive once, in offset order,
since all clients connect before the stream starts. Per client:

* lost        ticks in the log the client never got (while its session lasted);
* duplicated  ticks got more than once (by (producer, n), so a tick published twice under
              two offsets counts too);
* reordered   ticks that arrived with a lower offset than the one before, or out of their
              producer's numbering;
* unnumbered  ticks delivered without an offset (ahead of the log, during an outage): a
              client recovering from an older offset gets them again;
* unlogged    ticks got that are not in the log (delivered by a worker whose publish never
              landed: informational);
* recovered / fresh   reconnections that got the session back / a new one. A fresh session
              is the client being told (new id); ticks after it are counted from its first
              tick on, ticks before it count as lost if missing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from siopg.adapter.postgres import codec
from siopg.adapter.postgres.codec import SELECT_COLUMNS
from siopg.adapter.postgres.migrations import quote_ident

Tick = tuple[str, int]


@dataclass
class LogTruth:
    ticks: dict[Tick, list[int]]  # (producer, n) -> offsets of its rows (more than one: published twice)
    by_offset: list[tuple[int, Tick]]  # in offset order

    @property
    def double_published(self) -> dict[Tick, list[int]]:
        return {t: offs for t, offs in self.ticks.items() if len(offs) > 1}

    def producer_gaps(self) -> dict[str, int]:
        """Per producer, numbers missing from the log between its first and last tick (emits
        that never landed, e.g. a killed worker's unsent buffer: no client could get them)."""
        seen: dict[str, set[int]] = {}
        for producer, n in self.ticks:
            seen.setdefault(producer, set()).add(n)
        return {p: (max(ns) - min(ns) + 1 - len(ns)) for p, ns in seen.items() if max(ns) - min(ns) + 1 != len(ns)}


async def read_truth(dsn: str, schema: str = "siopg") -> LogTruth:
    """Every `tick` broadcast in the log, decoded like a server would."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT {SELECT_COLUMNS} FROM {quote_ident(schema)}.packets WHERE recoverable ORDER BY id")
    finally:
        await conn.close()
    ticks: dict[Tick, list[int]] = {}
    by_offset = []
    for row in rows:
        args = codec.decode(row).data.get("packet")
        if isinstance(args, list) and len(args) == 3 and args[0] == "tick":
            tick = (str(args[1]), int(args[2]))
            ticks.setdefault(tick, []).append(row["id"])
            by_offset.append((row["id"], tick))
    return LogTruth(ticks, by_offset)


@dataclass
class ClientCount:
    index: int
    transport: str
    got: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    unnumbered: int = 0
    unlogged: int = 0
    recovered: int = 0
    fresh: int = 0
    connect_errors: int = 0
    longest_away_ms: int = 0
    connected_at_end: bool = False
    lost_sample: list[Any] = field(default_factory=list)
    dup_sample: list[Any] = field(default_factory=list)
    reorder_sample: list[Any] = field(default_factory=list)


def count_client(index: int, record: dict[str, Any], truth: LogTruth) -> ClientCount:
    c = ClientCount(index, record.get("transport", "?"))
    history = record["history"]
    connects = [h for h in history if h[0] == "connect"]
    c.recovered = sum(1 for h in connects[1:] if h[3])
    c.fresh = sum(1 for h in connects[1:] if not h[3])
    c.connect_errors = sum(1 for h in history if h[0] == "connect_error")
    c.connected_at_end = bool(history) and history[-1][0] == "connect"
    away_since = None
    for h in history:
        if h[0] == "disconnect" and away_since is None:
            away_since = h[1]
        elif h[0] == "connect" and away_since is not None:
            c.longest_away_ms = max(c.longest_away_ms, h[1] - away_since)
            away_since = None
    ticks = [(str(p), int(n), off) for p, n, off in record["ticks"]]
    c.got = len(ticks)
    seen = Counter((p, n) for p, n, _ in ticks)
    c.duplicated = sum(k - 1 for k in seen.values() if k > 1)
    c.dup_sample = [t for t, k in seen.items() if k > 1][:5]
    c.unlogged = sum(1 for t in seen if t not in truth.ticks)
    last_off = -1
    last_n: dict[str, int] = {}
    for p, n, off in ticks:
        o = int(off) if off is not None else None
        if o is None:
            c.unnumbered += 1
        elif o < last_off or n < last_n.get(p, -1):
            c.reordered += 1
            if len(c.reorder_sample) < 5:
                c.reorder_sample.append((p, n, off, last_off, last_n.get(p)))
        if o is not None:
            last_off = max(last_off, o)
        last_n[p] = max(last_n.get(p, -1), n)
    # expected: the whole log (every client connected before the first tick); a client told by
    # a fresh session is excused the stretch of the log between two ticks it got
    missing = [(off, t) for off, t in truth.by_offset if t not in seen]
    if c.fresh:
        offsets_got = sorted(int(o) for _, _, o in ticks if o is not None)
        # a fresh session legitimately misses the stretch between the drop and its first tick
        missing = [(off, t) for off, t in missing if not _in_reset_gap(off, offsets_got)]
    c.lost = len(missing)
    c.lost_sample = missing[:5]
    return c


def _in_reset_gap(off: int, offsets_got: list[int]) -> bool:
    """`off` falls in a stretch of the log the client got nothing of (told by a fresh session)."""
    import bisect

    i = bisect.bisect_left(offsets_got, off)
    return 0 < i < len(offsets_got) and offsets_got[i - 1] < off < offsets_got[i]


@dataclass
class Verdict:
    clients: list[ClientCount]
    truth: LogTruth

    def total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.clients)

    def summary(self) -> dict[str, Any]:
        bad = [c for c in self.clients
               if c.lost or c.duplicated or c.reordered or c.unnumbered or c.fresh or not c.connected_at_end]
        return {
            "clients": len(self.clients), "log_ticks": len(self.truth.by_offset),
            "lost": self.total("lost"), "duplicated": self.total("duplicated"), "reordered": self.total("reordered"),
            "unnumbered": self.total("unnumbered"),
            "unlogged": self.total("unlogged"), "recovered": self.total("recovered"), "fresh": self.total("fresh"),
            "clients_hurt": len(bad), "not_connected": sum(1 for c in self.clients if not c.connected_at_end),
            "double_published": len(self.truth.double_published), "producer_gaps": self.truth.producer_gaps(),
            "producers": dict(Counter(p for p, _ in self.truth.ticks)),
            "longest_away_ms": max((c.longest_away_ms for c in self.clients), default=0),
            "sample": [vars(c) for c in bad[:3]],
        }

    def assert_clean(self, window_s: float) -> None:
        """None lost, none duplicated, none reordered, every session recovered within the window."""
        s = self.summary()
        problems = {k: s[k] for k in ("lost", "duplicated", "reordered", "unnumbered", "fresh", "not_connected") if s[k]}
        if s["longest_away_ms"] > window_s * 1000:
            problems["longest_away_ms"] = s["longest_away_ms"]
        assert s["log_ticks"] > 0, "no tick reached the log: the scenario tested nothing"
        assert all(c.got for c in self.clients), "a client got no tick at all"
        assert not problems, f"{problems}; summary: {s}"


def judge(report: dict[str, Any], truth: LogTruth) -> Verdict:
    return Verdict([count_client(i, r, truth) for i, r in enumerate(report["clients"])], truth)


def converged(report: dict[str, Any], truth: LogTruth) -> bool:
    """Every client holds every tick of the log (or the stream is quiet and nothing moves)."""
    want = set(truth.ticks)
    return all(want <= {(str(p), int(n)) for p, n, _ in r["ticks"]} for r in report["clients"])
