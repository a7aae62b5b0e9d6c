#!/usr/bin/env python3
"""Multi-worker fanout (issue 4): `siopg serve --workers 2` vs a Node socket.io 4.8.4 cluster.

Side by side in one run, with the same load client (bench/workers_load_client.mjs, official
socket.io-client 4.8.4 in --procs Node processes pinned to --client-cpu):
  siopg  `siopg serve bench/apps/siopg_workers_app.py:io --workers 2`: the supervisor hands
         each accepted socket to the worker owning the sid; workers share PostgreSQL
         (--database-url, env SIOPG_BENCH_DATABASE_URL, else the local 127.0.0.1:5432 `test`
         database if it answers, else siopg's embedded default);
  node   bench/apps/node_sticky_cluster.mjs: node:cluster primary with @socket.io/sticky's
         setupMaster, 2 workers with setupWorker + @socket.io/postgres-adapter 0.5.0 on the
         same PostgreSQL (--node-database-url, default: the one siopg uses; Node has no
         embedded fallback).
Both server trees (supervisor + workers, primary + workers) are pinned to --server-cpu.

Two client modes: "polling" (the JS default, polling first then upgrade) and "websocket"
(websocket only). Per run, a fresh server and fresh clients:
  ramp      N clients connect, --concurrency in flight per load process; the ramp ends when
            every client is connected AND (polling) upgraded: ramp conn/s = N / that time.
            "no welcome": clients that never got the "welcome" the server emits in its
            connection handler (the lost first message); "no hello ack": clients whose own
            first message ("hello", emitted at their connect event, acknowledged by the
            server) was never acknowledged.
  phase 0   --messages broadcasts to everyone, at most --window in flight ahead of the
            slowest load process: delivered msgs/s, and server CPU s per 1M delivered
            (utime+stime of the whole server tree from /proc, postgres processes excluded
            and shown apart as "pg CPU s", which is the whole machine's postgres).
  phase 1   --rate broadcasts/s for --rate-seconds: p50/p99 latency of a paced broadcast.
Tables: medians of --runs runs per server and mode (lost, out-of-order and no-welcome are
totals over all runs, so any loss shows), then siopg/node ratios.

    .venv/bin/python bench/workers_fanout.py                                  # ~4 minutes (~6-7 under load)
    .venv/bin/python bench/workers_fanout.py --runs 1 --clients 200 --messages 300
    .venv/bin/python bench/workers_fanout.py --modes polling --servers node
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402
from cluster_fanout import drop_schema, postgres_cpu, prepare_schema  # noqa: E402
from fanout import percentile  # noqa: E402

MODES = ("polling", "websocket")
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"


def local_pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            return True
    except OSError:
        return False


def tree_cpu(pid: int) -> float:
    """utime+stime of pid and its live descendants, postgres processes (embedded pg) excluded."""
    total = 0
    for p in c._descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm, rest = raw.split("(", 1)[1].rsplit(")", 1)
        if comm == "postgres":
            continue
        fields = rest.split()
        total += int(fields[11]) + int(fields[12])
    return total / c.CLK_TCK


_live_servers: list[Any] = []


def stop_tree(p: Any) -> None:
    """Stop a server tree: its process group, then any descendant that left the group
    (siopg workers run in sessions of their own and are drained by the supervisor)."""
    pids = [q for q in c._descendants(p.pid) if q != p.pid]
    if p in _live_servers:
        _live_servers.remove(p)
    c.stop(p)
    for q in pids:
        try:
            os.kill(q, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def tree_size(pid: int) -> int:
    return len(c._descendants(pid))


class Load(c.LoadClients):
    """c.LoadClients running bench/workers_load_client.mjs instead of load_client.mjs."""

    def __init__(self, url: str, counts: list[int], cpu: str | None, **extra: Any) -> None:
        import queue

        self.events: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.procs = []
        self.counts = list(counts)
        for i, n in enumerate(self.counts):
            cfg = {"url": url, "clients": n, "proc": i, **extra}
            p = c.spawn(["node", str(c.BENCH / "workers_load_client.mjs"), json.dumps(cfg)], cpu,
                        f"wload-{i}", pipes=True)
            self.procs.append(p)
            threading.Thread(target=self._reader, args=(i, p), daemon=True).start()


def wait_siopg_ready(port: int, proc: Any, workers: int, timeout: float = 60.0) -> None:
    """The supervisor listens at once; wait until every worker reports ready (its /metrics)."""
    c.wait_port(port, proc, timeout)
    deadline = time.monotonic() + timeout
    want = f"siopg_supervisor_workers_ready {workers}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"siopg supervisor exited with {proc.returncode}; log: {c.LOG_DIR}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                if want in r.read().decode():
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"siopg workers not ready within {timeout}s; log: {c.LOG_DIR}")


def start_server(kind: str, args: argparse.Namespace, scratch: Path) -> tuple[Any, int, dict[str, Any]]:
    """Start one server tree pinned to --server-cpu; returns (process, port, cleanup info)."""
    port = c.free_port()
    info: dict[str, Any] = {}
    if kind == "siopg":
        cmd = [sys.executable, "-m", "siopg", "serve", f"{c.BENCH / 'apps' / 'siopg_workers_app.py'}:io",
               "--workers", str(args.workers), "--port", str(port), "--host", "127.0.0.1",
               "--log-level", "warning", "--grace", "2", "--data-dir", str(scratch / "siopg-data"),
               "--pid-file", str(scratch / f"siopg-{port}.pid")]
        if args.database_url:
            schema = prepare_schema(args.database_url)
            info["schema"] = schema
            os.environ["SIOPG_BENCH_DSN"] = args.database_url
            os.environ["SIOPG_BENCH_SCHEMA"] = schema
            cmd += ["--database-url", args.database_url]
        else:
            os.environ.pop("SIOPG_BENCH_DSN", None)
            os.environ.pop("SIOPG_BENCH_SCHEMA", None)
        p = c.spawn(cmd, args.server_cpu, f"siopg-workers-{port}")
        _live_servers.append(p)
        try:
            wait_siopg_ready(port, p, args.workers, 120.0 if not args.database_url else 60.0)
        except BaseException:
            stop_tree(p)
            if info.get("schema"):
                drop_schema(args.database_url, info["schema"])
            raise
    else:
        os.environ["SIOPG_BENCH_DSN"] = args.node_database_url
        os.environ["SIOPG_BENCH_CHANNEL"] = "bench_" + secrets.token_hex(4)
        cmd = ["node", str(c.BENCH / "apps" / "node_sticky_cluster.mjs"), str(port), str(args.workers)]
        p = c.spawn(cmd, args.server_cpu, f"node-cluster-{port}")
        _live_servers.append(p)
        try:
            c.wait_port(port, p, 60.0)
        except BaseException:
            stop_tree(p)
            raise
    time.sleep(args.settle)  # adapters' LISTEN and heartbeats everywhere
    return p, port, info


def one_run(kind: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    load_avg = c.loadavg()
    scratch = Path(tempfile.mkdtemp(prefix="siopg-wbench-", dir=c.LOG_DIR))
    server, port, info = start_server(kind, args, scratch)
    load = None
    rate_n = max(0, int(args.rate * args.rate_seconds))
    try:
        counts = c.split(args.clients, args.procs)
        cpu_r0 = tree_cpu(server.pid)
        load = Load(f"http://127.0.0.1:{port}", counts, args.client_cpu, transport=mode,
                    concurrency=args.concurrency, n=args.messages, rateN=rate_n)
        ready = load.collect("ready", args.timeout)
        cpu_r1 = tree_cpu(server.pid)
        n_ready = sum(r["ready"] for r in ready.values())
        if len(ready) < len(counts) or n_ready < args.clients:
            raise RuntimeError(f"{kind}/{mode}: only {n_ready}/{args.clients} clients ready in "
                               f"{args.timeout:.0f}s (logs: {c.LOG_DIR})")
        ramp_s = (max(r["lastReadyUs"] for r in ready.values())
                  - min(r["rampStartUs"] for r in ready.values())) / 1e6
        time.sleep(args.settle)
        cpu0 = tree_cpu(server.pid)
        pg0 = postgres_cpu()
        wall0 = time.monotonic()
        payload = {"n": args.messages, "window": args.window, "rate": args.rate, "rate_n": rate_n,
                   "procs": counts}
        load.send(0, {"cmd": "start", "payload": payload})
        ph0 = load.collect("ph0", args.timeout)
        cpu1 = tree_cpu(server.pid)
        pg1 = postgres_cpu()
        wall_ph0 = time.monotonic() - wall0
        results = load.collect("result", args.timeout)
        timed_out = len(ph0) < len(counts) or len(results) < len(counts)
        if len(results) < len(counts):  # ask the stragglers for what they have
            for i in range(len(counts)):
                if i not in results:
                    load.send(i, {"cmd": "report"})
            results.update(load.collect("result", 5))
        procs_alive = tree_size(server.pid)
        alive = server.poll() is None
        restarts = siopg_restarts(port) if kind == "siopg" else 0
    finally:
        if load is not None:
            load.close()
        stop_tree(server)
        if info.get("schema"):
            try:
                drop_schema(args.database_url, info["schema"])
            except Exception as e:  # noqa: BLE001
                print(f"    dropping schema {info['schema']} failed: {e}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)  # the embedded PostgreSQL's data, if any

    res = list(results.values())
    uniq0 = sum(r["received0"] for r in res)  # phase-0 deliveries
    delivered = sum(r["received"] - r["duplicates"] for r in res)
    hists: list[list[list[int]]] = []
    for key in ("hist0", "hist1"):
        h: dict[int, int] = {}
        for r in res:
            for bound, n in r[key]:
                h[bound] = h.get(bound, 0) + n
        hists.append(sorted([b, n] for b, n in h.items()))
    first = min((r["firstSendUs"] for r in res if r["firstSendUs"]), default=0)
    last0 = max((r["lastRecv0Us"] for r in res), default=0)
    span0 = (last0 - first) / 1e6 if first and last0 > first else wall_ph0
    cpu_ph0 = cpu1 - cpu0
    return {
        "server": kind, "mode": mode, "clients": args.clients,
        "ramp": args.clients / ramp_s if ramp_s > 0 else float("nan"), "ramp_s": ramp_s,
        "ramp_cpu_ms": (cpu_r1 - cpu_r0) * 1e3 / args.clients,
        "rate": uniq0 / span0 if span0 > 0 else 0.0,
        "p50": percentile(hists[1], 0.50) if rate_n else percentile(hists[0], 0.50),
        "p99": percentile(hists[1], 0.99) if rate_n else percentile(hists[0], 0.99),
        "p50_ph0": percentile(hists[0], 0.50), "p99_ph0": percentile(hists[0], 0.99),
        "cpu_ph0": cpu_ph0, "cpu_util": cpu_ph0 / wall_ph0 if wall_ph0 > 0 else float("nan"), "cpu_per_m": cpu_ph0 / uniq0 * 1e6 if uniq0 else float("nan"),
        "pg_cpu": pg1 - pg0,
        "lost": (args.messages + rate_n) * args.clients - delivered,
        "ooo": sum(r["outOfOrder"] for r in res), "dups": sum(r["duplicates"] for r in res),
        "no_welcome": sum(r["noWelcome"] for r in res) + (args.clients - sum(r["everConnected"] for r in res)),
        "no_hello_ack": sum(r["noHelloAck"] for r in res) + (args.clients - sum(r["everConnected"] for r in res)),
        "connect_errors": sum(r["connectErrors"] for r in res),
        "disconnects": sum(r["disconnected"] for r in res), "reconnects": sum(r["reconnects"] for r in res),
        "restarts": restarts, "server_procs": procs_alive,
        "span0": span0, "timed_out": timed_out or not alive, "loadavg": load_avg,
    }


def siopg_restarts(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("siopg_supervisor_worker_restarts_total "):
                    return int(float(line.split()[1]))
    except OSError:
        pass
    return -1


COLS = [
    ("server", "{:<6}", "server"), ("mode", "{:<9}", "mode"), ("ramp c/s", "{:>8.0f}", "ramp"),
    ("msgs/s", "{:>8.0f}", "rate"), ("p50 ms", "{:>7.2f}", "p50"), ("p99 ms", "{:>7.2f}", "p99"),
    ("CPU s/1M", "{:>8.2f}", "cpu_per_m"), ("pg CPU s", "{:>8.2f}", "pg_cpu"), ("lost", "{:>6}", "lost"),
    ("ooo", "{:>5}", "ooo"), ("no welcome", "{:>10}", "no_welcome"), ("no hello ack", "{:>12}", "no_hello_ack"),
]


def header() -> str:
    out = []
    for i, (name, fmt, _) in enumerate(COLS):
        w = len(fmt.format("" if "s}" in fmt or "<" in fmt else 0))
        out.append(name.ljust(w) if "<" in fmt else name.rjust(max(w, len(name))))
    return " | ".join(out)


def row(r: dict[str, Any]) -> str:
    out = []
    for name, fmt, key in COLS:
        s = fmt.format(r[key])
        out.append(s if "<" in fmt else s.rjust(len(name)))
    return " | ".join(out)


def summarize(runs: dict[tuple[str, str], list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    med: dict[str, Any] = {}
    print(f"\n== medians of {args.runs} run(s) per server and mode "
          "(lost, ooo, no welcome: totals over all runs)")
    print(header())
    for (s, mode), rs in runs.items():
        if not rs:
            print(f"{s:<6} | {mode:<9} | no successful run")
            continue
        m: dict[str, Any] = {"server": s, "mode": mode, "runs": rs, "failed": args.runs - len(rs)}
        for k in ("ramp", "rate", "p50", "p99", "cpu_per_m", "pg_cpu", "ramp_cpu_ms", "p50_ph0", "p99_ph0"):
            m[k] = c.median([r[k] for r in rs])
        for k in ("lost", "ooo", "no_welcome", "no_hello_ack", "connect_errors", "disconnects", "dups"):
            m[k] = sum(r[k] for r in rs)
        med[f"{s}/{mode}"] = m
        extra = f"  (connect errors {m['connect_errors']}, disconnects {m['disconnects']}, " \
                f"ramp CPU {m['ramp_cpu_ms']:.2f} ms/conn" + (f", {m['failed']} run(s) failed" if m["failed"] else "") + ")"
        print(row(m) + extra)
    for mode in args.modes:
        a, b = med.get(f"siopg/{mode}"), med.get(f"node/{mode}")
        if a and b:
            print(f"siopg/node {mode:<9}: ramp {c.ratio(a['ramp'], b['ramp'])}, msgs/s {c.ratio(a['rate'], b['rate'])}, "
                  f"p50 {c.ratio(a['p50'], b['p50'])}, p99 {c.ratio(a['p99'], b['p99'])}, "
                  f"CPU per msg {c.ratio(a['cpu_per_m'], b['cpu_per_m'])}, "
                  f"ramp CPU per conn {c.ratio(a['ramp_cpu_ms'], b['ramp_cpu_ms'])}, "
                  f"no welcome {a['no_welcome']} vs {b['no_welcome']}, no hello ack {a['no_hello_ack']} vs {b['no_hello_ack']}, of {len(a['runs']) * args.clients} / "
                  f"{len(b['runs']) * args.clients} connections")
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="siopg,node", help="comma list of siopg,node")
    ap.add_argument("--modes", default="polling,websocket", help="comma list of polling,websocket")
    ap.add_argument("--workers", type=int, default=2, help="worker processes per server")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2, help="Node load-client processes")
    ap.add_argument("--concurrency", type=int, default=50, help="connections in flight per load process (ramp)")
    ap.add_argument("--messages", type=int, default=800, help="phase 0: broadcasts per run")
    ap.add_argument("--window", type=int, default=30, help="phase 0: broadcasts in flight ahead of the slowest load process")
    ap.add_argument("--rate", type=float, default=20, help="phase 1: broadcasts/s")
    ap.add_argument("--rate-seconds", type=float, default=4, help="phase 1: seconds of paced sending (0: no phase 1)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds after start-up and after the ramp")
    ap.add_argument("--timeout", type=float, default=60.0, help="per stage of a run (ramp, phase 0, phase 1), seconds")
    ap.add_argument("--database-url", default=os.environ.get("SIOPG_BENCH_DATABASE_URL"),
                    help="PostgreSQL for siopg (env SIOPG_BENCH_DATABASE_URL; default: local test db if up, else embedded)")
    ap.add_argument("--embedded", action="store_true",
                    help="siopg on its embedded PostgreSQL (pgserver, started by the supervisor) even if a server is up")
    ap.add_argument("--node-database-url", help="PostgreSQL for the Node cluster (default: siopg's, or the local test db)")
    ap.add_argument("--json", help="also write every run to this file")
    args = ap.parse_args()
    args.servers = c.parse_servers(ap, args.servers)
    args.modes = [m for m in args.modes.split(",") if m]
    for m in args.modes:
        if m not in MODES:
            ap.error(f"unknown mode {m}")
    pg_up = local_pg_up()
    if not args.database_url and pg_up:
        args.database_url = LOCAL_PG
    args.node_database_url = args.node_database_url or args.database_url or (LOCAL_PG if pg_up else None)
    if args.embedded:
        args.database_url = None
    if "node" in args.servers and not args.node_database_url:
        ap.error("the Node cluster needs PostgreSQL: --node-database-url (no local server on 127.0.0.1:5432)")
    c.raise_nofile(2 * args.clients + 1024)

    print(f"workers fanout: {args.clients} socket.io-client 4.8.4 clients in {args.procs} node processes on CPU "
          f"{args.client_cpu}; {args.workers} workers per server, server tree on CPU {args.server_cpu}; "
          f"siopg db: {'embedded (pgserver)' if not args.database_url else 'given URL, own schema per run'}; "
          f"{args.messages} broadcasts (window {args.window}) then {args.rate:g}/s for {args.rate_seconds:g}s; "
          f"logs in {c.LOG_DIR}")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {(s, m): [] for m in args.modes for s in args.servers}
    print(header())
    t_start = time.monotonic()
    for n in range(args.runs):
        for mode in args.modes:
            order = args.servers if n % 2 == 0 else args.servers[::-1]  # alternate who goes first
            for s in order:
                t0 = time.monotonic()
                try:
                    r = one_run(s, mode, args)
                except Exception as e:  # noqa: BLE001 - report and go on with the others
                    print(f"{s} {mode} run {n + 1} failed: {e}", file=sys.stderr, flush=True)
                    continue
                runs[(s, mode)].append(r)
                notes = [f"run {n + 1}", f"{time.monotonic() - t0:.0f}s", f"ramp {r['ramp_s']:.1f}s",
                         f"phase 0 server CPU {r['cpu_util']:.0%} of a core",
                         f"load {r['loadavg']}"]
                for k in ("connect_errors", "disconnects", "reconnects", "dups"):
                    if r[k]:
                        notes.append(f"{k.replace('_', ' ')} {r[k]}")
                if r["restarts"]:
                    notes.append(f"worker restarts {r['restarts']}")
                if r["timed_out"]:
                    notes.append("TIMED OUT")
                print(row(r) + "  (" + ", ".join(notes) + ")", flush=True)
    print(f"(total {time.monotonic() - t_start:.0f}s, load average now {c.loadavg()})")
    med = summarize(runs, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": med}, indent=1, default=str))
    ok = all(runs[k] and len(runs[k]) == args.runs for k in runs)
    return 0 if ok else 1


def _on_signal(signum: int, frame: Any) -> None:
    """Server trees first (siopg workers live in sessions of their own), then every group."""
    for p in list(_live_servers):
        stop_tree(p)
    c._on_signal(signum, frame)


if __name__ == "__main__":
    # Ctrl-C like SIGTERM (asyncio.run inside would otherwise take SIGINT over and the
    # harness could carry on with the next run)
    for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(_sig, _on_signal)
    sys.exit(main())
