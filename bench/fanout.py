#!/usr/bin/env python3
"""Fanout benchmark: siopg vs Node socket.io 4.8.4, side by side, same load client.

Each run starts one server pinned to CPU 0 and the official socket.io-client
4.8.4 (websocket only) in several Node processes pinned to CPU 1. A control
client asks the server to broadcast N "tick" events to all clients; the clients
count every message (loss, duplicates, reordering) and histogram the latency
from the send time embedded by the server (CLOCK_MONOTONIC, one machine). The
server's CPU seconds (utime+stime from /proc) are read just before the trigger
and after every client got "done". Servers alternate run by run; the tables show
medians over the runs.

Two phases, each with a fresh server and fresh clients:
  throughput  as fast as the clients take it: the server keeps at most --window
              broadcasts in flight ahead of the slowest load process (latency
              here is mostly the window's queueing: window / rate).
  latency     paced at --rate broadcasts/s, well below saturation: p50/p99 show
              how long a broadcast takes to reach every client.

    .venv/bin/python bench/fanout.py                     # defaults: ~4 minutes
    .venv/bin/python bench/fanout.py --runs 1 --messages 500 --clients 200
    .venv/bin/python bench/fanout.py --phases throughput --window 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402


def percentile(hist: list[list[int]], q: float) -> float:
    """Upper bound (ms) of the bucket holding the q-quantile of a merged histogram."""
    total = sum(n for _, n in hist)
    if not total:
        return float("nan")
    need = q * total
    acc = 0
    for bound_us, n in hist:
        acc += n
        if acc >= need:
            return bound_us / 1000
    return hist[-1][0] / 1000


def merge_hists(res: list[dict[str, Any]]) -> list[list[int]]:
    """The load processes' sparse latency histograms, merged and sorted by bucket."""
    hist: dict[int, int] = {}
    for r in res:
        for bound, n in r["hist"]:
            hist[bound] = hist.get(bound, 0) + n
    return sorted([b, n] for b, n in hist.items())


def latency_summary(merged: list[list[int]]) -> dict[str, float]:
    """p50, p90, p99 and max (ms, bucket upper bounds) of a merged histogram."""
    return {"p50": percentile(merged, 0.50), "p90": percentile(merged, 0.90), "p99": percentile(merged, 0.99),
            "max": merged[-1][0] / 1000 if merged else float("nan")}


def delivery_stats(res: list[dict[str, Any]], wall: float, expected: int) -> tuple[dict[str, Any], float]:
    """Merge the load processes' reports: delivered, rate, p50, p99, lost, ooo, dups; and the span.

    The span runs from the first send to the last receipt (wall time if a report lacks them).
    """
    received = sum(r["received"] - r["duplicates"] for r in res)
    first = min((r["firstSendUs"] for r in res if r["firstSendUs"]), default=0)
    last = max((r["lastRecvUs"] for r in res), default=0)
    span = (last - first) / 1e6 if first and last > first else wall
    return {
        "delivered": received,
        "rate": received / span if span > 0 else 0.0,
        **latency_summary(merge_hists(res)),
        "lost": expected - received,
        "ooo": sum(r["outOfOrder"] for r in res),
        "dups": sum(r["duplicates"] for r in res),
    }, span


def one_run(kind: str, args: argparse.Namespace, n_msgs: int, window: int, rate: float) -> dict[str, Any]:
    load_avg = c.loadavg()
    server, port = c.start_server(kind, "fanout", args.server_cpu)
    load = None
    try:
        counts = c.split(args.clients, args.procs)
        load = c.LoadClients(
            f"http://127.0.0.1:{port}", counts, "fanout", args.client_cpu,
            concurrency=args.concurrency, n=n_msgs, progress=window > 0,
        )
        ready = load.collect("ready", args.timeout)
        connected = sum(r["connected"] for r in ready.values())
        if len(ready) < len(counts) or connected < args.clients:
            raise RuntimeError(f"{kind}: only {connected}/{args.clients} clients connected (logs: {c.LOG_DIR})")
        time.sleep(args.settle)
        spy = c.start_profiler(kind, server.pid, args.profile, "throughput" if window else "latency",
                               args.client_cpu, args.profile_native)
        cpu0 = c.cpu_seconds(server.pid)
        wall0 = time.monotonic()
        payload = {"n": n_msgs, "window": window, "rate": rate, "procs": counts, "pad": args.pad}
        load.send(0, {"cmd": "start", "payload": payload})
        results, timed_out = load.results(args.timeout)
        wall = time.monotonic() - wall0
        cpu = c.cpu_seconds(server.pid) - cpu0
        if spy is not None:
            c.stop_profiler(spy)
        client_cpu = sum(c.cpu_seconds(p.pid) for p in load.procs)
        alive = server.poll() is None
    finally:
        if load is not None:
            load.close()
        c.stop(server)

    res = list(results.values())
    stats, span = delivery_stats(res, wall, n_msgs * args.clients)
    received = stats["delivered"]
    return {
        "server": kind,
        "clients": args.clients,
        **stats,
        "disconnects": sum(r["disconnected"] for r in res),
        "cpu": cpu,
        "cpu_per_m": cpu / received * 1e6 if received else float("nan"),
        "client_cpu": client_cpu,
        "span": span,
        "timed_out": timed_out or not alive,
        "loadavg": load_avg,
    }


COLS = [
    ("server", "{:<6}"), ("clients", "{:>7}"), ("msgs/s", "{:>9.0f}"), ("p50 ms", "{:>7.2f}"),
    ("p99 ms", "{:>7.2f}"), ("lost", "{:>6}"), ("ooo", "{:>5}"), ("CPU s/1M", "{:>8.2f}"),
]
KEYS = ["server", "clients", "rate", "p50", "p99", "lost", "ooo", "cpu_per_m"]


def row(r: dict[str, Any]) -> str:
    return " | ".join(fmt.format(r[k]) for (_, fmt), k in zip(COLS, KEYS))


def header() -> str:
    widths = [len(fmt.format(0 if i else "")) if i else 6 for i, (_, fmt) in enumerate(COLS)]
    return " | ".join(name.rjust(w) if i else name.ljust(w) for i, ((name, _), w) in enumerate(zip(COLS, widths)))


def phase(name: str, servers: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    if name == "throughput":
        n_msgs, window, rate = args.messages, args.window, 0.0
        desc = f"{n_msgs} broadcasts, window {window}"
    else:
        n_msgs, window, rate = max(1, int(args.rate * args.rate_seconds)), 0, args.rate
        desc = f"{n_msgs} broadcasts paced at {rate:g}/s"
    print(f"\n== {name}: {desc}, {args.runs} run(s)")
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in servers}
    print(header())
    for n in range(args.runs):
        for s in (servers if n % 2 == 0 else servers[::-1]):  # alternate who goes first
            try:
                r = one_run(s, args, n_msgs, window, rate)
            except Exception as e:  # report and go on with the other server
                print(f"{s} run {n + 1} failed: {e}", file=sys.stderr)
                continue
            runs[s].append(r)
            extra = f"  (run {n + 1}, {r['span']:.1f}s, server CPU {r['cpu']:.1f}s, client CPU {r['client_cpu']:.1f}s, load {r['loadavg']}" + (
                f", dups {r['dups']}, disconnects {r['disconnects']}" if r["dups"] or r["disconnects"] else "") + (
                ", TIMED OUT" if r["timed_out"] else "") + ")"
            print(row(r) + extra, flush=True)

    med: dict[str, dict[str, Any]] = {}
    for s, rs in runs.items():
        if not rs:
            continue
        m: dict[str, Any] = {"server": s, "clients": args.clients, "runs": rs}
        for k in ("rate", "p50", "p99", "cpu_per_m"):
            m[k] = c.median([r[k] for r in rs])
        m["lost"] = sum(r["lost"] for r in rs)  # totals: any loss must show
        m["ooo"] = sum(r["ooo"] for r in rs)
        m["failed"] = args.runs - len(rs)
        med[s] = m
    print(f"-- {name}: medians of {args.runs} run(s) (lost and ooo: totals over all runs)")
    print(header())
    for m in med.values():
        print(row(m) + (f"  ({m['failed']} run(s) failed)" if m["failed"] else ""))
    if "siopg" in med and "node" in med:
        a, b = med["siopg"], med["node"]
        print(f"siopg/node: msgs/s {c.ratio(a['rate'], b['rate'])}, p50 {c.ratio(a['p50'], b['p50'])}, "
              f"p99 {c.ratio(a['p99'], b['p99'])}, CPU per msg {c.ratio(a['cpu_per_m'], b['cpu_per_m'])}")
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="siopg,node", help="comma list of siopg,node")
    ap.add_argument("--phases", default="throughput,latency", help="comma list of throughput,latency")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2, help="Node load-client processes")
    ap.add_argument("--messages", type=int, default=1500, help="throughput phase: broadcasts per run")
    ap.add_argument("--window", type=int, default=30, help="throughput phase: max broadcasts in flight ahead of the slowest load process")
    ap.add_argument("--rate", type=float, default=40, help="latency phase: broadcasts/s")
    ap.add_argument("--rate-seconds", type=float, default=8, help="latency phase: seconds of paced sending per run")
    ap.add_argument("--pad", type=int, default=0, help="extra payload bytes per message")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=50, help="connections in flight per load process while ramping up")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between ramp-up and trigger")
    ap.add_argument("--timeout", type=float, default=120.0, help="per phase, seconds")
    ap.add_argument("--json", help="also write all runs to this file")
    c.add_profile_args(ap, "during each measured window")
    args = ap.parse_args()
    servers = c.parse_servers(ap, args.servers)
    phases = [p for p in args.phases.split(",") if p]
    for p in phases:
        if p not in ("throughput", "latency"):
            ap.error(f"unknown phase {p}")
    c.raise_nofile(args.clients + 1024)

    print(f"fanout: {args.clients} websocket clients (socket.io-client 4.8.4) in {args.procs} node processes "
          f"on CPU {args.client_cpu}, server on CPU {args.server_cpu}")
    results = {p: phase(p, servers, args) for p in phases}
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "phases": results}, indent=1))
    ok = all(m["failed"] == 0 for med in results.values() for m in med.values())
    ok = ok and all(len(med) == len(servers) for med in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
