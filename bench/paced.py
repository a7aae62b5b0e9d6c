#!/usr/bin/env python3
"""Paced (everyday-load) broadcasts: siopg and Node socket.io 4.8.4, 1 process and 2-process
clusters over PostgreSQL, side by side in one run.

Four variants, alternating run by run (the order rotates each run):
  siopg      one siopg process (in-memory adapter)               apps/siopg_fanout.py
  siopg2     two siopg processes + PostgresAdapter, one schema    apps/siopg_cluster_fanout.py
  node       one Node socket.io 4.8.4 process                     apps/node_fanout.mjs
  node2      two Node processes + @socket.io/postgres-adapter    apps/node_cluster_fanout.mjs
In the clusters load process i connects to server i % 2 and server 0 broadcasts, so half of
every delivery crosses processes through Postgres.

The sender broadcasts tick k at t0 + k / rate (a fixed schedule, never a sleep after an emit),
~60 bytes on the wire per frame, far below saturation. Clients (official socket.io-client 4.8.4,
websocket only, Node processes on --client-cpu) histogram the latency from the send time in the
payload (CLOCK_MONOTONIC, one machine): p50, p90, p99, max. CPU per delivered message counts
every server process ("server"), and for the clusters also every postgres process on the
machine during the window ("+pg": machine-wide, so other database users inflate it).
siopg runs also report the bench-side instruments (apps/_instruments.py): GC pauses, time in
Namespace.deliver (queueing) and in the flush callback (the write() per client), loop lag.

    SIOPG_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/paced.py
    ... --clients 1000 --servers siopg,node --runs 1 --seconds 5      # a quick look
Defaults: 1000 clients at 20 broadcasts/s and 10000 at 5/s, 10 s each, medians of 3 runs.
Without SIOPG_TEST_DATABASE_URL only the 1-process variants run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import cluster_fanout as cf
from fanout import delivery_stats

VARIANTS = ("siopg", "siopg2", "node", "node2")
PAD = 14  # '42["tick",{"seq":123,"t":12345678901234,"pad":"xx..."}]' ~ 60 bytes


def start_variant(variant: str, dsn: str | None, cpu: str) -> tuple[list[Any], str | None]:
    """The variant's server processes [(Popen, port)] and its siopg schema (to drop after)."""
    kind = variant.rstrip("2")
    if not variant.endswith("2"):
        return [c.start_server(kind, "fanout", cpu)], None
    assert dsn
    schema = cf.prepare_schema(dsn) if kind == "siopg" else None
    return cf.start_servers(kind, dsn, schema, cpu, 2, False), schema


def one_run(variant: str, clients: int, rate: float, args: argparse.Namespace, dsn: str | None) -> dict[str, Any]:
    load_avg = c.loadavg()
    n_msgs = max(1, int(rate * args.seconds))
    servers, schema = start_variant(variant, dsn, args.server_cpu)
    pids = [p.pid for p, _ in servers]
    load = None
    try:
        counts = c.split(clients, args.procs or max(2, 2 * round(clients / 5000)))
        load = cf.ClusterLoad([f"http://127.0.0.1:{port}" for _, port in servers], counts, "fanout",
                              args.client_cpu, concurrency=args.concurrency, n=n_msgs, progress=False)
        ready = load.collect("ready", args.timeout)
        connected = sum(r["connected"] for r in ready.values())
        if len(ready) < len(counts) or connected < clients:
            raise RuntimeError(f"{variant}: only {connected}/{clients} clients connected (logs: {c.LOG_DIR})")
        time.sleep(args.settle)
        spy = c.start_profiler("siopg" if variant == "siopg" else "", pids[0], args.profile, "paced",
                               args.client_cpu, args.profile_native)
        inst0 = c.instrument_snapshot(pids) if variant.startswith("siopg") else {}
        cpu0 = sum(c.cpu_seconds(p) for p in pids)
        pg0 = cf.postgres_cpu()
        wall0 = time.monotonic()
        load.send(0, {"cmd": "start", "payload": {"n": n_msgs, "window": 0, "rate": rate, "procs": counts,
                                                  "pad": args.pad}})
        results, timed_out = load.results(args.seconds + args.timeout)
        wall = time.monotonic() - wall0
        cpu = sum(c.cpu_seconds(p) for p in pids) - cpu0
        pg_cpu = cf.postgres_cpu() - pg0 if variant.endswith("2") else 0.0
        inst = c.instrument_window(inst0, c.instrument_snapshot(pids)) if inst0 else {}
        if spy is not None:
            c.stop_profiler(spy)
        alive = all(p.poll() is None for p, _ in servers)
    finally:
        if load is not None:
            load.close()
        for p, _ in servers:
            c.stop(p)
        if schema and dsn:
            cf.drop_schema(dsn, schema)
    stats, span = delivery_stats(list(results.values()), wall, n_msgs * clients)
    got = stats["delivered"]
    per_m = 1e6 / got if got else float("nan")
    return {"variant": variant, "clients": clients, "rate_per_s": rate, **stats, "span": span,
            "cpu": cpu, "cpu_per_m": cpu * per_m, "pg_cpu": pg_cpu, "cpu_pg_per_m": (cpu + pg_cpu) * per_m,
            "instruments": inst, "timed_out": timed_out or not alive, "loadavg": load_avg}


COLS = [("variant", "{:<7}"), ("p50 ms", "{:>7.2f}"), ("p90 ms", "{:>7.2f}"), ("p99 ms", "{:>7.2f}"),
        ("max ms", "{:>7.1f}"), ("lost", "{:>6}"), ("ooo", "{:>5}"), ("CPU s/1M", "{:>8.2f}"),
        ("+pg s/1M", "{:>8.2f}")]
KEYS = ["variant", "p50", "p90", "p99", "max", "lost", "ooo", "cpu_per_m", "cpu_pg_per_m"]
MEDIAN_KEYS = ("p50", "p90", "p99", "max", "cpu_per_m", "cpu_pg_per_m")


def row(r: dict[str, Any]) -> str:
    return " | ".join(fmt.format(r[k]) for (_, fmt), k in zip(COLS, KEYS, strict=True))


def header() -> str:
    return " | ".join(name.rjust(len(fmt.format(0 if i else ""))) if i else name.ljust(7)
                      for i, (name, fmt) in enumerate(COLS))


def scenario(clients: int, rate: float, variants: list[str], args: argparse.Namespace,
             dsn: str | None) -> dict[str, Any]:
    print(f"\n== {clients} clients, {rate:g} broadcasts/s for {args.seconds:g} s, {args.runs} run(s); "
          f"load {c.loadavg()}")
    print(header())
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for n in range(args.runs):
        k = n % len(variants)
        for v in variants[k:] + variants[:k]:  # rotate who goes first
            try:
                r = one_run(v, clients, rate, args, dsn)
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                print(f"{v} run {n + 1} failed: {e}", file=sys.stderr)
                continue
            runs[v].append(r)
            print(row(r) + f"  (run {n + 1}, server CPU {r['cpu']:.2f}s, pg CPU {r['pg_cpu']:.2f}s, load "
                  f"{r['loadavg']}" + (f", dups {r['dups']}" if r["dups"] else "")
                  + (", TIMED OUT" if r["timed_out"] else "") + ")", flush=True)
            line = c.instrument_line(r["instruments"], r["delivered"])
            if line:
                print(f"          {line}")
    med: dict[str, Any] = {}
    for v, rs in runs.items():
        if rs:
            m: dict[str, Any] = {"variant": v, "runs": rs, "failed": args.runs - len(rs)}
            for key in MEDIAN_KEYS:
                m[key] = c.median([r[key] for r in rs])
            m["lost"] = sum(r["lost"] for r in rs)
            m["ooo"] = sum(r["ooo"] for r in rs)
            med[v] = m
    print(f"-- medians of {args.runs} run(s) (lost, ooo: totals)")
    print(header())
    for m in med.values():
        print(row(m) + (f"  ({m['failed']} run(s) failed)" if m["failed"] else ""))
    for a, b in (("siopg", "node"), ("siopg2", "node2")):
        if a in med and b in med:
            x, y = med[a], med[b]
            print(f"{a}/{b}: p50 {c.ratio(x['p50'], y['p50'])}, p99 {c.ratio(x['p99'], y['p99'])}, "
                  f"CPU per msg {c.ratio(x['cpu_per_m'], y['cpu_per_m'])}"
                  + (f", with pg {c.ratio(x['cpu_pg_per_m'], y['cpu_pg_per_m'])}" if a.endswith("2") else ""))
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(VARIANTS), help="comma list of " + ",".join(VARIANTS))
    ap.add_argument("--clients", default="1000,10000", help="comma list of client counts")
    ap.add_argument("--rates", default="",
                    help="broadcasts/s per client count (default 20 for <= 1000 clients, else 5)")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of paced sending per run")
    ap.add_argument("--pad", type=int, default=PAD, help="payload padding bytes (default: ~60-byte frames)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--procs", type=int, default=0, help="load processes (default 2 per 5000 clients, at least 2)")
    ap.add_argument("--concurrency", type=int, default=50, help="connects in flight per load process")
    c.add_run_args(ap)
    c.add_profile_args(ap, "1-process during each measured window")
    args = ap.parse_args()
    variants = [v for v in args.servers.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown server {v}")
    os.environ["SIOPG_BENCH_WRITE_COALESCE_MS"] = str(args.write_coalesce_ms)
    dsn = os.environ.get("SIOPG_TEST_DATABASE_URL")
    if not dsn and any(v.endswith("2") for v in variants):
        print("SIOPG_TEST_DATABASE_URL not set: cluster variants skipped", file=sys.stderr)
        variants = [v for v in variants if not v.endswith("2")]
    counts = [int(x) for x in args.clients.split(",") if x]
    rates = [float(x) for x in args.rates.split(",") if x] or [20.0 if n <= 1000 else 5.0 for n in counts]
    if len(rates) != len(counts):
        ap.error("--rates needs one rate per --clients entry")
    c.raise_nofile(2 * max(counts) + 1024)
    print(f"paced: servers on CPU {args.server_cpu}, load clients on CPU {args.client_cpu}; variants "
          f"{', '.join(variants)}; siopg write_coalesce_ms {args.write_coalesce_ms:g}")
    results = {f"{n}@{r:g}": scenario(n, r, variants, args, dsn) for n, r in zip(counts, rates, strict=True)}
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "scenarios": results}, indent=1))
    ok = all(len(med) == len(variants) and not any(m["failed"] for m in med.values()) for med in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
