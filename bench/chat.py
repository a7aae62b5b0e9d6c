#!/usr/bin/env python3
"""Chat-shaped load: many small room emits, each crossing a 2-process cluster through Postgres.

--clients (1000) official socket.io-client 4.8.4 clients (websocket only, Node processes on
--client-cpu) in --rooms (100) rooms; client g joins room g % rooms, load process i connects
to server i % 2, so every room has members on both servers. In a step every client emits
"say" {r, t} to its room on a fixed schedule (client g's k-th emit at start + (k + g/N)/rate
seconds); the server relays it with socket.to(room).emit, so the trip is client -> server ->
Postgres -> every server -> the room's other clients. Receivers histogram now - t (the
sender's CLOCK_MONOTONIC send time): p50/p90/p99/max of the whole trip.

  siopg2   two siopg processes + PostgresAdapter (one schema)   apps/siopg_chat.py
  node2    two Node socket.io 4.8.4 + @socket.io/postgres-adapter 0.5.0   apps/node_chat.mjs
  siopg, node   the same app in one process (no Postgres), for reference

Modes:
  fixed (default)  one step at --rate emits/s per client (1: 1000 room emits/s), medians of
                   --runs alternating runs, each with fresh servers and clients.
  step             per server: one set of connections, steps at each of --rates in turn until
                   a step is not sustained: p99 > --p99-limit ms (100) or fewer than 99.9 % of
                   the expected deliveries arrived within --drain s after the last emit.
                   Reports the highest sustained room-emit rate (emits/s over all clients).
A step where the load clients could not keep their own schedule (an emit > 50 ms late) is
flagged "client-bound": the load core, not the server, limited that step.

    SIOPG_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/chat.py
    ... --mode step
    ... --clients 200 --rooms 20 --runs 1 --seconds 3          # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import cluster_fanout as cf
from fanout import latency_summary, merge_hists

VARIANTS = ("siopg2", "node2", "siopg", "node")
CLIENT_BOUND_US = 50_000


class ChatLoad(c.LoadClients):
    """LoadClients started from one config per process (each has its own url and base index)."""

    def __init__(self, cfgs: list[dict[str, Any]], cpu: str | None) -> None:
        self.events = queue.Queue()
        self.procs = []
        self.counts = [cfg["clients"] for cfg in cfgs]
        for i, cfg in enumerate(cfgs):
            p = c.spawn(["node", str(c.BENCH / "load_client.mjs"), json.dumps(cfg)], cpu, f"load-{i}", pipes=True)
            self.procs.append(p)
            threading.Thread(target=self._reader, args=(i, p), daemon=True).start()

class Cluster:
    """One variant's servers, schema and connected load clients; close() stops them all."""

    def __init__(self, variant: str, args: argparse.Namespace, dsn: str | None) -> None:
        self.variant = variant
        self.kind = variant.rstrip("2")
        self.dsn = dsn
        self.schema: str | None = None
        self.load: ChatLoad | None = None
        self.servers: list[Any] = []
        try:
            self._start(args)
        except BaseException:
            self.close()
            raise

    def _start(self, args: argparse.Namespace) -> None:
        if self.variant.endswith("2"):
            assert self.dsn
            self.schema = cf.prepare_schema(self.dsn) if self.kind == "siopg" else None
            self.servers = cf.start_servers(self.kind, self.dsn, self.schema, args.server_cpu, 2, False, app="chat")
        else:
            os.environ.pop("SIOPG_BENCH_DSN", None)
            self.servers = [c.start_server(self.kind, "chat", args.server_cpu)]
        self.pids = [p.pid for p, _ in self.servers]
        self.counts = c.split(args.clients, args.procs)
        cfgs = [{"url": f"http://127.0.0.1:{self.servers[i % len(self.servers)][1]}", "clients": n, "proc": i,
                 "mode": "chat", "concurrency": args.concurrency, "base": sum(self.counts[:i]),
                 "total": args.clients, "rooms": args.rooms} for i, n in enumerate(self.counts)]
        self.load = ChatLoad(cfgs, args.client_cpu)
        ready = self.load.collect("ready", args.timeout)
        connected = sum(r["connected"] for r in ready.values())
        if len(ready) < len(self.counts) or connected < args.clients:
            raise RuntimeError(f"{self.variant}: only {connected}/{args.clients} clients connected (logs: {c.LOG_DIR})")
        time.sleep(args.settle)

    def step(self, n: int, rate: float, args: argparse.Namespace) -> dict[str, Any]:
        """Every client emits at `rate`/s for args.seconds; the figures of that step."""
        assert self.load is not None
        load_avg = c.loadavg()
        inst0 = c.instrument_snapshot(self.pids) if self.kind == "siopg" else {}
        cpu0 = sum(c.cpu_seconds(p) for p in self.pids)
        pg0 = cf.postgres_cpu()
        for i in range(len(self.counts)):
            self.load.send(i, {"cmd": "chat", "step": n, "rate": rate, "seconds": args.seconds, "pad": args.pad})
        sent = self.load.collect("sent", args.seconds * 3 + args.timeout)
        time.sleep(args.drain)
        for i in range(len(self.counts)):
            self.load.send(i, {"cmd": "report"})
        res = list(self.load.collect("result", 10).values())
        cpu = sum(c.cpu_seconds(p) for p in self.pids) - cpu0
        pg_cpu = cf.postgres_cpu() - pg0 if self.variant.endswith("2") else 0.0
        inst = c.instrument_window(inst0, c.instrument_snapshot(self.pids)) if inst0 else {}
        room_size = args.clients // args.rooms
        n_sent = sum(r["sent"] for r in res)
        expected = n_sent * (room_size - 1)
        got = sum(r["received"] for r in res)
        lat = latency_summary(merge_hists(res))
        lag_max = max((r["lagMaxUs"] for r in res), default=0)
        complete = len(res) == len(self.counts) and len(sent) == len(self.counts)
        per_m = 1e6 / got if got else float("nan")
        return {
            "variant": self.variant, "rate": rate, "room_emits_per_s": rate * args.clients, "sent": n_sent,
            "expected": expected, "delivered": got, "missing": expected - got,
            "stale": sum(r["stale"] for r in res), **lat,
            "cpu_per_m": cpu * per_m, "cpu_pg_per_m": (cpu + pg_cpu) * per_m, "cpu": cpu, "pg_cpu": pg_cpu,
            "client_lag_max_ms": lag_max / 1000, "client_bound": lag_max > CLIENT_BOUND_US,
            "sustained": complete and lat["p99"] <= args.p99_limit and got >= 0.999 * expected,
            "instruments": inst, "loadavg": load_avg,
        }

    def close(self) -> None:
        if self.load is not None:
            self.load.close()
        for p, _ in self.servers:
            c.stop(p)
        if self.schema and self.dsn:
            cf.drop_schema(self.dsn, self.schema)
            self.schema = None


COLS = [("variant", "{:<7}"), ("emits/s", "{:>8.0f}"), ("p50 ms", "{:>7.2f}"), ("p90 ms", "{:>7.2f}"),
        ("p99 ms", "{:>7.2f}"), ("max ms", "{:>7.1f}"), ("missing", "{:>7}"), ("CPU s/1M", "{:>8.2f}"),
        ("+pg s/1M", "{:>8.2f}")]
KEYS = ["variant", "room_emits_per_s", "p50", "p90", "p99", "max", "missing", "cpu_per_m", "cpu_pg_per_m"]


def row(r: dict[str, Any]) -> str:
    return " | ".join(fmt.format(r[k]) for (_, fmt), k in zip(COLS, KEYS, strict=True))


def header() -> str:
    return " | ".join(name.rjust(len(fmt.format(0 if i else ""))) if i else name.ljust(7)
                      for i, (name, fmt) in enumerate(COLS))


def show(r: dict[str, Any], note: str) -> None:
    flags = ("" if r["sustained"] else ", NOT sustained") + (", client-bound" if r["client_bound"] else "")
    print(row(r) + f"  ({note}, client lag max {r['client_lag_max_ms']:.1f} ms, stale {r['stale']}, "
          f"load {r['loadavg']}{flags})", flush=True)
    line = c.instrument_line(r["instruments"], r["delivered"])
    if line:
        print(f"          {line}")


def fixed(variants: list[str], args: argparse.Namespace, dsn: str | None) -> dict[str, Any]:
    print(f"\n== fixed: {args.rate:g} emits/s per client for {args.seconds:g} s, {args.runs} run(s)")
    print(header())
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for n in range(args.runs):
        k = n % len(variants)
        for v in variants[k:] + variants[:k]:
            try:
                cluster = Cluster(v, args, dsn)
                try:
                    r = cluster.step(n, args.rate, args)
                finally:
                    cluster.close()
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                print(f"{v} run {n + 1} failed: {e}", file=sys.stderr)
                continue
            runs[v].append(r)
            show(r, f"run {n + 1}")
    med: dict[str, Any] = {}
    for v, rs in runs.items():
        if rs:
            m = {"variant": v, "runs": rs, "sustained": all(r["sustained"] for r in rs),
                 "client_bound": any(r["client_bound"] for r in rs)}
            for key in ("room_emits_per_s", "p50", "p90", "p99", "max", "cpu_per_m", "cpu_pg_per_m"):
                m[key] = c.median([r[key] for r in rs])
            m["missing"] = sum(r["missing"] for r in rs)
            med[v] = m
    print(f"-- medians of {args.runs} run(s) (missing: total)")
    print(header())
    for m in med.values():
        print(row(m))
    if "siopg2" in med and "node2" in med:
        x, y = med["siopg2"], med["node2"]
        print(f"siopg2/node2: p50 {c.ratio(x['p50'], y['p50'])}, p99 {c.ratio(x['p99'], y['p99'])}, "
              f"CPU per msg {c.ratio(x['cpu_per_m'], y['cpu_per_m'])}, "
              f"with pg {c.ratio(x['cpu_pg_per_m'], y['cpu_pg_per_m'])}")
    return med


def step(variants: list[str], args: argparse.Namespace, dsn: str | None) -> dict[str, Any]:
    rates = [float(x) for x in args.rates.split(",") if x]
    print(f"\n== step: emits/s per client {', '.join(f'{r:g}' for r in rates)}, {args.seconds:g} s each, "
          f"until p99 > {args.p99_limit:g} ms or deliveries fall behind")
    print(header())
    out: dict[str, Any] = {}
    for v in variants:
        steps: list[dict[str, Any]] = []
        best = 0.0
        try:
            cluster = Cluster(v, args, dsn)
            try:
                for n, rate in enumerate(rates):
                    r = cluster.step(n, rate, args)
                    steps.append(r)
                    show(r, f"step {n + 1}")
                    if not r["sustained"]:
                        break
                    best = r["room_emits_per_s"]
            finally:
                cluster.close()
        except Exception as e:  # noqa: BLE001
            print(f"{v} failed: {e}", file=sys.stderr)
        bound = bool(steps) and steps[-1]["client_bound"]
        out[v] = {"variant": v, "steps": steps, "best_room_emits_per_s": best, "client_bound": bound}
    print("-- highest sustained room-emit rate (p99 under the limit, >= 99.9 % delivered)")
    for v, m in out.items():
        print(f"{v:<7} {m['best_room_emits_per_s']:>8.0f} emits/s" + ("  (the next step was client-bound: the "
              "load core, not the server, may be the limit)" if m["client_bound"] else ""))
    if out.get("node2", {}).get("best_room_emits_per_s") and "siopg2" in out:
        print(f"siopg2/node2: {c.ratio(out['siopg2']['best_room_emits_per_s'], out['node2']['best_room_emits_per_s'])}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("fixed", "step"), default="fixed")
    ap.add_argument("--servers", default="siopg2,node2", help="comma list of " + ",".join(VARIANTS))
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rooms", type=int, default=100)
    ap.add_argument("--rate", type=float, default=1.0, help="fixed mode: emits/s per client")
    ap.add_argument("--rates", default="1,2,3,4,6,8,12,16,24,32", help="step mode: emits/s per client, ascending")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of emitting per step")
    ap.add_argument("--drain", type=float, default=1.0, help="seconds to wait for deliveries after the last emit")
    ap.add_argument("--p99-limit", type=float, default=100.0, help="step mode: ms")
    ap.add_argument("--pad", type=int, default=0, help="payload padding bytes")
    ap.add_argument("--runs", type=int, default=3, help="fixed mode: alternating runs")
    ap.add_argument("--procs", type=int, default=2, help="load processes (process i -> server i %% 2)")
    ap.add_argument("--concurrency", type=int, default=50)
    c.add_run_args(ap)
    args = ap.parse_args()
    variants = [v for v in args.servers.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown server {v}")
    if args.clients % args.rooms:
        ap.error("--clients must be a multiple of --rooms (rooms of equal size)")
    os.environ["SIOPG_BENCH_WRITE_COALESCE_MS"] = str(args.write_coalesce_ms)
    dsn = os.environ.get("SIOPG_TEST_DATABASE_URL")
    if not dsn and any(v.endswith("2") for v in variants):
        ap.error("set SIOPG_TEST_DATABASE_URL for the cluster variants")
    c.raise_nofile(args.clients + 1024)
    print(f"chat: {args.clients} clients in {args.rooms} rooms, {args.procs} load processes on CPU "
          f"{args.client_cpu}, servers on CPU {args.server_cpu}")
    result = fixed(variants, args, dsn) if args.mode == "fixed" else step(variants, args, dsn)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "result": result}, indent=1))
    return 0 if len(result) == len(variants) else 1


if __name__ == "__main__":
    sys.exit(main())
