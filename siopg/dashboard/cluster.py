"""The whole cluster from the servers' snapshots: the page's `stats.json` (pure, no I/O).

`merge(entries, log)` sums the snapshots of the live servers into totals, keeps a row per
server (health from its heartbeat's and its snapshot's ages), and lines the servers'
history rings up in time buckets of one step: rates per second for packets and for
recoveries, recovered and failed by cause. Ages come from the reader of the snapshots
(Postgres' clock for the Postgres board) plus each point's age within its own server's
clock, so servers whose clocks disagree still line up. Cost: O(servers x (labels + points)).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from siopg.dashboard.stats import FAILED_PREFIX, HISTORY_STEP, HISTORY_WINDOW, RATE_COUNTERS

#: a snapshot older than this many publish intervals (plus a second) is "stale"
STALE_INTERVALS = 3


@dataclass(slots=True)
class Entry:
    """One server as a board saw it: its snapshot (None if it published none) and ages in
    seconds (`heartbeat_age` None: no heartbeat to go by, e.g. a single process)."""

    id: str
    doc: dict[str, Any] | None
    heartbeat_age: float | None = None
    stats_age: float = 0.0
    heartbeat_timeout: float = 10.0  # the reader's, for a server whose snapshot does not say


def health(entry: Entry) -> str:
    """"down" (heartbeat too old), "no stats", "stale" (snapshot late) or "ok"."""
    doc = entry.doc or {}
    timeout = doc.get("heartbeat_timeout") or entry.heartbeat_timeout
    if entry.heartbeat_age is not None and entry.heartbeat_age > timeout:
        return "down"
    if entry.doc is None:
        return "no stats"
    if entry.stats_age > STALE_INTERVALS * float(doc.get("interval") or 2.0) + 1.0:
        return "stale"
    return "ok"


def recovery(counters: dict[str, int]) -> dict[str, Any]:
    """Attempted, succeeded, failed (and by cause, from `recovery_failed_<cause>`), rate."""
    attempted = counters.get("recoveries_attempted", 0)
    succeeded = counters.get("recoveries_succeeded", 0)
    causes = {n[len(FAILED_PREFIX):]: v for n, v in sorted(counters.items()) if n.startswith(FAILED_PREFIX)}
    return {
        "attempted": attempted,
        "succeeded": succeeded,
        "failed": max(0, attempted - succeeded),
        "causes": causes,
        "rate": succeeded / attempted if attempted else None,
    }


def _add(into: dict[str, int], values: dict[str, Any]) -> None:
    for name, value in values.items():
        into[name] = into.get(name, 0) + int(value)


def _server_row(entry: Entry, state: str) -> dict[str, Any]:
    doc = entry.doc or {}
    counters = doc.get("counters", {})
    uptime = None
    if "t" in doc and "started" in doc:
        uptime = round(max(0.0, doc["t"] - doc["started"] + entry.stats_age), 1)
    return {
        "id": entry.id,
        "worker": doc.get("worker"),
        "host": doc.get("host"),
        "pid": doc.get("pid"),
        "uptime": uptime,
        "health": state,
        "heartbeat_age": None if entry.heartbeat_age is None else round(entry.heartbeat_age, 1),
        "stats_age": round(entry.stats_age, 1),
        "sockets": doc.get("sockets", 0),
        "rooms": doc.get("rooms", 0),
        "transports": doc.get("transports", {}),
        "namespaces": [{"name": n, "sockets": s, "rooms": r} for n, s, r in doc.get("namespaces", [])],
        "rates": {str(n): float(v) for n, v in doc.get("rates", {}).items()},  # the page formats them
        "packets_in": counters.get("packets_in", 0),
        "packets_out": counters.get("packets_out", 0),
        "recovery": recovery(counters),
    }


def history(entries: list[Entry], step: float = HISTORY_STEP, window: float = HISTORY_WINDOW) -> dict[str, Any]:
    """The servers' history rings summed per time bucket (bucket 0 = now), oldest first.

    Rates are each server's counter delta between two of its points over their interval,
    put in the bucket of the later point; sockets are each server's value at its point.
    """
    sockets: dict[int, int] = defaultdict(int)
    rates: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for entry in entries:
        doc = entry.doc or {}
        h = doc.get("history") or {}
        times = h.get("t") or []
        if not times or "t" not in doc:
            continue
        series = h.get("counters") or {}
        for i, t in enumerate(times):
            age = doc["t"] - t + entry.stats_age
            if age > window:
                continue
            bucket = round(age / step)
            sockets[bucket] += int(h["sockets"][i])
            if i == 0 or t <= times[i - 1]:
                continue
            dt = t - times[i - 1]
            for name, values in series.items():
                rates[name][bucket] += max(0, values[i] - values[i - 1]) / dt
            attempted = series.get("recoveries_attempted")
            succeeded = series.get("recoveries_succeeded")
            if attempted and succeeded:
                failed = (attempted[i] - attempted[i - 1]) - (succeeded[i] - succeeded[i - 1])
                rates["failed"][bucket] += max(0, failed) / dt
    buckets = sorted(set(sockets) | {b for r in rates.values() for b in r}, reverse=True)

    def column(name: str) -> list[float]:
        return [round(rates[name].get(b, 0.0), 3) for b in buckets]

    return {
        "step": step,
        "window": window,
        "age": [round(b * step, 1) for b in buckets],
        "sockets": [sockets.get(b, 0) for b in buckets],
        "packets_in": column("packets_in"),
        "packets_out": column("packets_out"),
        "recovered": column("recoveries_succeeded"),
        "failed": column("failed"),
        "causes": {n[len(FAILED_PREFIX):]: column(n) for n in sorted(rates) if n.startswith(FAILED_PREFIX)},
    }


def merge(entries: list[Entry], log: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stats document of the cluster (documented in dashboard/README.md)."""
    states = {e.id: health(e) for e in entries}
    live = [e for e in entries if states[e.id] != "down" and e.doc is not None]
    counters: dict[str, int] = {}
    transports: dict[str, int] = {}
    rates: dict[str, float] = {name: 0.0 for name in RATE_COUNTERS}
    namespaces: dict[str, list[int]] = {}
    for e in live:
        doc = e.doc or {}
        _add(counters, doc.get("counters", {}))
        _add(transports, doc.get("transports", {}))
        for name, value in doc.get("rates", {}).items():
            rates[name] = rates.get(name, 0.0) + float(value)
        for name, count, rooms in doc.get("namespaces", []):
            totals = namespaces.setdefault(name, [0, 0])
            totals[0] += count
            totals[1] += rooms
    if log is not None:
        log = {**log, "pruned_total": sum(int((e.doc or {}).get("pruned_total") or 0) for e in live)}
    return {
        "server_count": sum(1 for state in states.values() if state != "down"),
        "servers": [_server_row(e, states[e.id]) for e in sorted(entries, key=_order)],
        "sockets": sum((e.doc or {}).get("sockets", 0) for e in live),
        "rooms": sum((e.doc or {}).get("rooms", 0) for e in live),
        "namespaces": [{"name": n, "sockets": s, "rooms": r} for n, (s, r) in sorted(namespaces.items())],
        "engine": {
            "open": sum(transports.values()),
            "by_transport": dict(sorted(transports.items())),
            "opened_total": counters.get("engine_connections_total", 0),
        },
        "counters": {n: v for n, v in sorted(counters.items()) if n != "engine_connections_total"},
        "rates": {n: round(v, 3) for n, v in rates.items()},
        "recovery": recovery(counters),
        "sessions_persisted": counters.get("sessions_persisted", 0),
        "log": log,
        "history": history(live),
    }


def readable(entry: Entry) -> bool:
    """False when `entry`'s snapshot is not one `merge` can read (another process wrote it):
    a board drops such a snapshot rather than let one row hide the whole cluster."""
    try:
        merge([entry])
    except (AttributeError, IndexError, KeyError, OverflowError, TypeError, ValueError):
        return False
    return True


def _order(entry: Entry) -> tuple[str, int, str, str]:
    """By host, then worker (numerically: worker 10 after worker 2), then id."""
    doc = entry.doc or {}
    worker = str(doc.get("worker") or "")
    return (str(doc.get("host") or ""), int(worker) if worker.isdecimal() else -1, worker, entry.id)
