#!/usr/bin/env python3
"""Connection benchmark: idle memory per connection and ramp-up rate, siopg vs Node socket.io.

For each server (pinned to CPU 0): start it, warm it up with a few connections,
read its RSS, then open --clients idle websocket-only socket.io-client 4.8.4
connections from several Node processes (pinned to CPU 1, --concurrency
connections in flight per process). Reports connections/s during the ramp-up
(first connect attempt to last connect event), server CPU per connection during
the ramp, and (RSS after - RSS before) / clients in KiB once all are connected
and idle for --settle seconds. Servers alternate run by run; medians are shown.

    .venv/bin/python bench/connections.py                 # 10k clients, ~2 minutes
    .venv/bin/python bench/connections.py --clients 2000 --runs 1
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


def one_run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    load_avg = c.loadavg()
    server, port = c.start_server(kind, "fanout", args.server_cpu)
    url = f"http://127.0.0.1:{port}"
    load = None
    try:
        warm = c.LoadClients(url, [args.warmup], "idle", args.client_cpu, concurrency=10)
        ok = warm.collect("ready", args.timeout)
        warm.close()
        if not ok or ok[0]["connected"] < args.warmup:
            raise RuntimeError(f"{kind}: warm-up failed (logs: {c.LOG_DIR})")
        time.sleep(args.settle)
        rss0 = c.rss_kib(server.pid)
        cpu0 = c.cpu_seconds(server.pid)
        counts = c.split(args.clients, args.procs)
        spy = c.start_profiler(kind, server.pid, args.profile, "connections", args.client_cpu, args.profile_native)
        load = c.LoadClients(url, counts, "idle", args.client_cpu, concurrency=args.concurrency)
        ready = load.collect("ready", args.timeout)
        cpu = c.cpu_seconds(server.pid) - cpu0
        if spy is not None:
            c.stop_profiler(spy)
        connected = sum(r["connected"] for r in ready.values())
        failed = sum(r["failed"] for r in ready.values())
        if len(ready) < len(counts):
            raise RuntimeError(f"{kind}: {len(counts) - len(ready)} load process(es) never got ready (logs: {c.LOG_DIR})")
        start = min(r["rampStartUs"] for r in ready.values())
        end = max(r["lastConnectUs"] for r in ready.values())
        time.sleep(args.settle)
        rss1 = c.rss_kib(server.pid)
    finally:
        if load is not None:
            load.close()
        c.stop(server)
    span = (end - start) / 1e6
    return {
        "server": kind,
        "connected": connected,
        "failed": failed,
        "conn_per_s": connected / span if span > 0 else float("nan"),
        "ramp_s": span,
        "cpu_us_per_conn": cpu / connected * 1e6 if connected else float("nan"),
        "rss0_mib": rss0 / 1024,
        "rss1_mib": rss1 / 1024,
        "kib_per_conn": (rss1 - rss0) / connected if connected else float("nan"),
        "loadavg": load_avg,
    }


HEAD = "server | connected | failed |  conn/s | ramp s | CPU us/conn | RSS before MiB | RSS after MiB | KiB/conn"


def row(r: dict[str, Any]) -> str:
    return (f"{r['server']:<6} | {r['connected']:>9} | {r['failed']:>6} | {r['conn_per_s']:>7.0f} | {r['ramp_s']:>6.2f} | "
            f"{r['cpu_us_per_conn']:>11.0f} | {r['rss0_mib']:>14.1f} | {r['rss1_mib']:>13.1f} | {r['kib_per_conn']:>8.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="siopg,node", help="comma list of siopg,node")
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--procs", type=int, default=4, help="Node load-client processes")
    ap.add_argument("--concurrency", type=int, default=25, help="connections in flight per load process")
    ap.add_argument("--warmup", type=int, default=20, help="connections opened and closed before the baseline RSS")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=2.0, help="idle seconds before each RSS reading")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--json", help="also write all runs to this file")
    c.add_profile_args(ap, "during the ramp-up")
    args = ap.parse_args()
    servers = c.parse_servers(ap, args.servers)
    limit = c.raise_nofile(args.clients + 4096)
    if limit < args.clients + 100:
        print(f"warning: open-files limit {limit} is below {args.clients} clients", file=sys.stderr)

    print(f"connections: {args.clients} idle websocket clients (socket.io-client 4.8.4) from {args.procs} node "
          f"processes on CPU {args.client_cpu} ({args.concurrency} in flight each), server on CPU {args.server_cpu}")
    print(HEAD)
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in servers}
    for n in range(args.runs):
        for s in (servers if n % 2 == 0 else servers[::-1]):  # alternate who goes first
            try:
                r = one_run(s, args)
            except Exception as e:
                print(f"{s} run {n + 1} failed: {e}", file=sys.stderr)
                continue
            runs[s].append(r)
            print(row(r) + f"  (run {n + 1}, load {r['loadavg']})", flush=True)
    med: dict[str, dict[str, Any]] = {}
    for s, rs in runs.items():
        if rs:
            m: dict[str, Any] = {"server": s}
            for k in ("connected", "conn_per_s", "ramp_s", "cpu_us_per_conn", "rss0_mib", "rss1_mib", "kib_per_conn"):
                m[k] = c.median([r[k] for r in rs])
            m["connected"] = int(m["connected"])
            m["failed"] = sum(r["failed"] for r in rs)
            med[s] = m
    print(f"\nmedians of {args.runs} run(s) (failed: total)")
    print(HEAD)
    for m in med.values():
        print(row(m))
    if "siopg" in med and "node" in med:
        a, b = med["siopg"], med["node"]
        print(f"siopg/node: conn/s {c.ratio(a['conn_per_s'], b['conn_per_s'])}, "
              f"CPU per conn {c.ratio(a['cpu_us_per_conn'], b['cpu_us_per_conn'])}, "
              f"KiB per conn {c.ratio(a['kib_per_conn'], b['kib_per_conn'])}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs, "medians": med}, indent=1))
    return 0 if all(len(v) == args.runs for v in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
