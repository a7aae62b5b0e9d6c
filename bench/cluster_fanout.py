#!/usr/bin/env python3
"""Cluster fanout: 2 siopg processes + Postgres vs 2 Node socket.io + @socket.io/postgres-adapter.

Same load client and figures as bench/fanout.py (official socket.io-client 4.8.4, websocket
only), but the clients are split across two server processes sharing one PostgreSQL: load
process i connects to server i % 2, the control client triggers the broadcasts on server 0,
so half of every delivery crosses processes through Postgres. Both servers are pinned to
--server-cpu, the load clients to --client-cpu; "CPU s/1M" is the two servers' CPU seconds per
million delivered messages; "pg CPU s" is what all postgres processes used meanwhile (the
database is shared with anything else running, so read it as a rough figure).

    SIOPG_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/cluster_fanout.py
    ... --runs 1 --messages 500 --clients 200 --phases throughput
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402
from fanout import delivery_stats  # noqa: E402


class ClusterLoad(c.LoadClients):
    """LoadClients whose process i connects to urls[i % len(urls)]."""

    def __init__(self, urls: list[str], counts: list[int], mode: str, cpu: str | None, **extra: Any) -> None:
        self.events: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.procs = []
        self.counts = list(counts)
        for i, n in enumerate(self.counts):
            cfg = {"url": urls[i % len(urls)], "clients": n, "proc": i, "mode": mode, **extra}
            p = c.spawn(["node", str(c.BENCH / "load_client.mjs"), json.dumps(cfg)], cpu, f"load-{i}", pipes=True)
            self.procs.append(p)
            threading.Thread(target=self._reader, args=(i, p), daemon=True).start()


def postgres_cpu() -> float:
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                raw = f.read()
            if "(postgres)" not in raw[:64]:
                continue
            fields = raw.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / c.CLK_TCK


def prepare_schema(dsn: str) -> str:
    from siopg.adapter.postgres.migrations import migrate_dsn

    name = "siopg_bench_" + secrets.token_hex(4)
    asyncio.run(migrate_dsn(dsn, name))
    return name


def drop_schema(dsn: str, name: str) -> None:
    import asyncpg

    from siopg.adapter.postgres.migrations import quote_ident

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
        finally:
            await conn.close()

    asyncio.run(go())


ASYNC_COMMIT = [False]


def start_servers(kind: str, dsn: str, schema: str | None, cpu: str | None, n: int, recovery: bool,
                  app: str = "cluster_fanout") -> list[Any]:
    os.environ["SIOPG_BENCH_DSN"] = dsn
    os.environ["SIOPG_BENCH_SCHEMA"] = schema or ""
    os.environ["SIOPG_BENCH_RECOVERY"] = "1" if recovery else "0"
    os.environ["SIOPG_BENCH_ASYNC_COMMIT"] = "1" if ASYNC_COMMIT[0] else "0"
    servers = []
    for _ in range(n):
        port = c.free_port()
        p = c.spawn(c.server_cmd(kind, port, app), cpu, f"server-{kind}-{port}")
        c.wait_port(port, p)
        servers.append((p, port))
    time.sleep(1.0)  # heartbeats / LISTEN set up everywhere
    return servers


def one_run(kind: str, args: argparse.Namespace, dsn: str, n_msgs: int, window: int, rate: float) -> dict[str, Any]:
    schema = prepare_schema(dsn) if kind == "siopg" else None
    servers = start_servers(kind, dsn, schema, args.server_cpu, args.servers_per_cluster, args.recovery)
    load = None
    try:
        counts = c.split(args.clients, args.procs)
        urls = [f"http://127.0.0.1:{port}" for _, port in servers]
        load = ClusterLoad(urls, counts, "fanout", args.client_cpu,
                           concurrency=args.concurrency, n=n_msgs, progress=window > 0)
        ready = load.collect("ready", args.timeout)
        connected = sum(r["connected"] for r in ready.values())
        if len(ready) < len(counts) or connected < args.clients:
            raise RuntimeError(f"{kind}: only {connected}/{args.clients} clients connected (logs: {c.LOG_DIR})")
        time.sleep(args.settle)
        spies = [c.start_profiler(kind, p.pid, args.profile, f"cluster{i}", args.client_cpu)
                 for i, (p, _) in enumerate(servers)]
        cpu0 = sum(c.cpu_seconds(p.pid) for p, _ in servers)
        pg0 = postgres_cpu()
        wall0 = time.monotonic()
        payload = {"n": n_msgs, "window": window, "rate": rate, "procs": counts, "pad": args.pad}
        load.send(0, {"cmd": "start", "payload": payload})
        results, timed_out = load.results(args.timeout)
        wall = time.monotonic() - wall0
        cpu = sum(c.cpu_seconds(p.pid) for p, _ in servers) - cpu0
        pg_cpu = postgres_cpu() - pg0
        for spy in spies:
            if spy is not None:
                c.stop_profiler(spy)
        alive = all(p.poll() is None for p, _ in servers)
    finally:
        if load is not None:
            load.close()
        for p, _ in servers:
            c.stop(p)
        if schema:
            drop_schema(dsn, schema)
    stats, span = delivery_stats(list(results.values()), wall, n_msgs * args.clients)
    received = stats["delivered"]
    return {
        "server": kind, "clients": args.clients, **stats,
        "cpu": cpu, "cpu_per_m": cpu / received * 1e6 if received else float("nan"),
        "pg_cpu": pg_cpu, "span": span, "timed_out": timed_out or not alive, "loadavg": c.loadavg(),
    }


COLS = [("server", "{:<6}"), ("clients", "{:>7}"), ("msgs/s", "{:>9.0f}"), ("p50 ms", "{:>7.2f}"),
        ("p99 ms", "{:>8.2f}"), ("lost", "{:>7}"), ("ooo", "{:>6}"), ("CPU s/1M", "{:>8.2f}"), ("pg CPU s", "{:>8.2f}")]
KEYS = ["server", "clients", "rate", "p50", "p99", "lost", "ooo", "cpu_per_m", "pg_cpu"]


def row(r: dict[str, Any]) -> str:
    return " | ".join(fmt.format(r[k]) for (_, fmt), k in zip(COLS, KEYS))


def header() -> str:
    return " | ".join(name.rjust(len(fmt.format(0 if i else ""))) if i else name.ljust(6)
                      for i, (name, fmt) in enumerate(COLS))


def phase(name: str, servers: list[str], args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    if name == "throughput":
        n_msgs, window, rate = args.messages, args.window, 0.0
        desc = f"{n_msgs} broadcasts, window {window}"
    else:
        n_msgs, window, rate = max(1, int(args.rate * args.rate_seconds)), 0, args.rate
        desc = f"{n_msgs} broadcasts paced at {rate:g}/s"
    print(f"\n== {name}: {desc}, {args.runs} run(s)")
    print(header())
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in servers}
    for n in range(args.runs):
        for s in servers:
            try:
                r = one_run(s, args, dsn, n_msgs, window, rate)
            except Exception as e:  # noqa: BLE001
                print(f"{s} run {n + 1} failed: {e}", file=sys.stderr)
                continue
            runs[s].append(r)
            print(row(r) + f"  (run {n + 1}, {r['span']:.1f}s, server CPU {r['cpu']:.1f}s, load {r['loadavg']}"
                  + (f", dups {r['dups']}" if r["dups"] else "") + (", TIMED OUT" if r["timed_out"] else "") + ")",
                  flush=True)
    med: dict[str, Any] = {}
    for s, rs in runs.items():
        if rs:
            m: dict[str, Any] = {"server": s, "clients": args.clients, "runs": rs}
            for k in ("rate", "p50", "p99", "cpu_per_m", "pg_cpu"):
                m[k] = c.median([r[k] for r in rs])
            m["lost"] = sum(r["lost"] for r in rs)
            m["ooo"] = sum(r["ooo"] for r in rs)
            med[s] = m
    print(f"-- {name}: medians of {args.runs} run(s) (lost and ooo: totals)")
    print(header())
    for m in med.values():
        print(row(m))
    if "siopg" in med and "node" in med:
        a, b = med["siopg"], med["node"]
        print(f"siopg/node: msgs/s {c.ratio(a['rate'], b['rate'])}, p50 {c.ratio(a['p50'], b['p50'])}, "
              f"p99 {c.ratio(a['p99'], b['p99'])}, CPU per msg {c.ratio(a['cpu_per_m'], b['cpu_per_m'])}")
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="siopg,node")
    ap.add_argument("--phases", default="throughput,latency")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2, help="load processes (process i -> server i %% 2)")
    ap.add_argument("--servers-per-cluster", type=int, default=2)
    ap.add_argument("--messages", type=int, default=1500)
    ap.add_argument("--window", type=int, default=30)
    ap.add_argument("--rate", type=float, default=40)
    ap.add_argument("--rate-seconds", type=float, default=8)
    ap.add_argument("--pad", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--recovery", action="store_true", help="siopg with connection state recovery on")
    ap.add_argument("--async-commit", action="store_true", help="siopg with synchronous_commit=False")
    ap.add_argument("--json")
    ap.add_argument("--profile", metavar="DIR", help="py-spy each siopg server during the measured window")
    args = ap.parse_args()
    dsn = os.environ.get("SIOPG_TEST_DATABASE_URL")
    if not dsn:
        ap.error("set SIOPG_TEST_DATABASE_URL to a PostgreSQL both clusters can use")
    servers = [s for s in args.servers.split(",") if s]
    ASYNC_COMMIT[0] = args.async_commit
    c.raise_nofile(args.clients + 1024)
    print(f"cluster fanout: {args.clients} clients in {args.procs} load processes on CPU {args.client_cpu}, "
          f"{args.servers_per_cluster} servers per cluster on CPU {args.server_cpu}, one PostgreSQL")
    results = {p: phase(p, servers, args, dsn) for p in args.phases.split(",") if p}
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "phases": results}, indent=1))
    return 0 if all(len(m) == len(servers) for m in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
