#!/usr/bin/env python3
"""The Postgres log's ceiling: publish rows/s and commit-to-read latency with 1, 2 and 4
workers reading, an Emitter publishing room emits of 100 bytes.

Every broadcast in a siopg cluster is a row appended to one table (under one advisory lock)
and read by every worker. Here N worker processes (apps/siopg_log_worker.py: real `siopg
serve` members with no clients, pinned to --server-cpu) read the log while --emitters
concurrent siopg.Emitter connections in this process (pinned to --client-cpu) publish
`to(room).emit("chat", <100 bytes>)`, each emit its own INSERT + NOTIFY transaction:
  flood (rate 0)  as fast as they can for --seconds: the committed rows/s is the ceiling
  paced (rate R)  R rows/s in total on a fixed schedule: latency below the ceiling
Per step: rows/s committed; commit-to-read p50/p99/max over every worker (from the moment
the Emitter got the commit confirmation to the moment a worker handed that row to its router,
so slightly under the true commit-to-read time); per worker: rows read (all of them without a
recipient: the workers hold no clients), LISTEN notifications and catch-up reads (wake-ups);
CPU of the workers and of every postgres process on the machine (machine-wide: other
database users count too); "publisher busy" is the publishing process's CPU share: near 100 %
the flood figure is bounded by the publisher, not by Postgres or the workers.
--publisher server publishes through a siopg server's own batching publisher instead (one more
member, apps/siopg_log_worker.py with SIOPG_BENCH_PUBLISH, on --client-cpu; many rows per
INSERT transaction, as `io.to(room).emit` in a worker does); latency is then from the emit()
call to the read (batching and commit included).

    SIOPG_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/log_ceiling.py
    ... --workers 1,2 --rates 0,500 --seconds 3          # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import cluster_fanout as cf

import siopg


def now_us() -> int:
    return time.monotonic_ns() // 1000


async def publish(dsn: str, schema: str, emitters: int, rate: float, seconds: float, rooms: int,
                  size: int) -> dict[int, int]:
    """Run the emitters; {row id: commit confirmation time (us)} of every row published."""
    commits: dict[int, int] = {}
    payload = "x" * size
    conns = [await siopg.Emitter(dsn, schema).connect() for _ in range(emitters)]
    t0 = now_us() + 50_000
    end = t0 + int(seconds * 1e6)
    counter = [0]

    async def run(e: siopg.Emitter) -> None:
        while True:
            k = counter[0]
            counter[0] += 1
            if rate > 0:  # emit k is due at t0 + k / rate, whichever emitter is free
                due = t0 + int(k * 1e6 / rate)
                if due >= end:
                    return
                if due > now_us():
                    await asyncio.sleep((due - now_us()) / 1e6)
            elif now_us() >= end:
                return
            offset = await e.to(f"room{k % rooms}").emit("chat", payload)
            commits[offset] = now_us()

    try:
        await asyncio.sleep(max(0.0, (t0 - now_us()) / 1e6))
        await asyncio.gather(*(run(e) for e in conns))
    finally:
        for e in conns:
            await e.close()
    return commits


def percentile(sorted_xs: list[int], q: float) -> float:
    if not sorted_xs:
        return float("nan")
    return sorted_xs[min(len(sorted_xs) - 1, int(q * len(sorted_xs)))] / 1000


def snapshot(pids: list[int], out_dir: Path, timeout: float = 5.0) -> dict[int, dict[str, Any]]:
    """SIGUSR2 each worker and read what it wrote (counters since its previous dump)."""
    for pid in pids:
        (out_dir / f"{pid}.json").unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR2)
    got: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            path = out_dir / f"{pid}.json"
            if pid not in got and path.exists():
                got[pid] = json.loads(path.read_text())
        time.sleep(0.05)
    return got


def publish_by_server(pub: Any, pub_pid: int, seconds: float, out_dir: Path) -> tuple[int, float]:
    """Start the publishing member (SIGUSR1), wait until it stops counting; (rows, seconds)."""
    t0, p0 = time.monotonic(), c.cpu_seconds(pub_pid)
    os.kill(pub_pid, signal.SIGUSR1)
    time.sleep(seconds)
    published, last = -1, 0
    while pub.poll() is None:  # the last batches are committed: the count stops moving
        last = snapshot([pub_pid], out_dir).get(pub_pid, {}).get("published", 0)
        if last == published:
            break
        published = last
        time.sleep(0.3)
    return last, (c.cpu_seconds(pub_pid) - p0) / (time.monotonic() - t0)


def one_step(n_workers: int, rate: float, args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    schema = cf.prepare_schema(dsn)
    out_dir = Path(tempfile.mkdtemp(prefix="log-", dir=c.LOG_DIR))
    os.environ.update(SIOPG_BENCH_DSN=dsn, SIOPG_BENCH_SCHEMA=schema, SIOPG_BENCH_LOG_OUT=str(out_dir))
    workers = []
    pub = None
    commits: dict[int, int] = {}
    try:
        for _ in range(n_workers):
            workers.append(c.start_server("siopg", "log_worker", args.server_cpu))
        if args.publisher == "server":
            os.environ["SIOPG_BENCH_PUBLISH"] = json.dumps(
                {"rate": rate, "seconds": args.seconds, "rooms": args.rooms, "size": args.size})
            pub, _ = c.start_server("siopg", "log_worker", args.client_cpu)
            del os.environ["SIOPG_BENCH_PUBLISH"]
        time.sleep(args.settle)
        pids = [p.pid for p, _ in workers]
        before = snapshot(pids, out_dir)
        pg0 = cf.postgres_cpu()
        t0, e0 = time.monotonic(), time.process_time()
        if pub is None:
            commits = asyncio.run(publish(dsn, schema, args.emitters, rate, args.seconds, args.rooms, args.size))
            published = len(commits)
            took, publisher_busy = time.monotonic() - t0, (time.process_time() - e0) / (time.monotonic() - t0)
        else:
            published, publisher_busy = publish_by_server(pub, pub.pid, args.seconds, out_dir)
            took = args.seconds
        time.sleep(args.drain)
        after = snapshot(pids, out_dir)
        pg_cpu = cf.postgres_cpu() - pg0
        if len(after) < n_workers or not all(p.poll() is None for p, _ in workers):
            raise RuntimeError(f"a worker did not answer or died (logs: {c.LOG_DIR})")
    finally:
        for p, _ in workers:
            c.stop(p)
        if pub is not None:
            c.stop(pub)
        cf.drop_schema(dsn, schema)
    lat: list[int] = []
    per_worker = []
    for pid, d in after.items():
        reads = d["reads"]
        seen = 0
        if commits:  # Emitter: commit confirmation -> read, joined by row id
            for i in range(0, len(reads), 2):
                t_commit = commits.get(reads[i])
                if t_commit is not None:
                    lat.append(max(0, reads[i + 1] - t_commit))
                    seen += 1
        else:  # server publisher: emit() call -> read, from the payload's send time
            lat.extend(d["sent_to_read"])
            seen = len(d["sent_to_read"])
        b = before.get(pid, {})
        per_worker.append({
            "rows": d["rows"] - b.get("rows", 0), "published_seen": seen,
            "notifications": d["notifications"] - b.get("notifications", 0),
            "catch_ups": d["catch_ups"] - b.get("catch_ups", 0), "cpu_s": d["cpu_s"] - b.get("cpu_s", 0.0),
        })
    lat.sort()
    rows = published
    missing = sum(rows - w["published_seen"] for w in per_worker)
    return {
        "workers": n_workers, "rate": rate, "published": rows, "rows_per_s": rows / took if took else 0.0,
        "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99), "max": lat[-1] / 1000 if lat else float("nan"),
        "missing": missing, "per_worker": per_worker,
        "worker_cpu_s": sum(w["cpu_s"] for w in per_worker), "pg_cpu_s": pg_cpu,
        "publisher_busy": publisher_busy, "loadavg": c.loadavg(),
    }


def show(r: dict[str, Any]) -> None:
    ws = r["per_worker"]
    avg = {k: sum(w[k] for w in ws) / len(ws) for k in ("rows", "notifications", "catch_ups")}
    mode = "flood" if not r["rate"] else f"{r['rate']:g}/s"
    print(f"{r['workers']:>7} | {mode:>7} | {r['rows_per_s']:>9.0f} | {r['p50']:>7.2f} | {r['p99']:>7.2f} | "
          f"{r['max']:>7.1f} | {r['missing']:>7} | {avg['rows']:>9.0f} | {avg['notifications']:>7.0f} | "
          f"{avg['catch_ups']:>7.0f} | {r['worker_cpu_s']:>6.2f} | {r['pg_cpu_s']:>6.2f} | "
          f"{r['publisher_busy']:>6.0%}  (load {r['loadavg']})",
          flush=True)


HEADER = ("workers |    mode |    rows/s | p50 ms  | p99 ms  | max ms  | missing | rows/wkr  | notifs  | "
          "reads   | wkr CPU | pg CPU | publisher busy")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2,4", help="comma list of reading worker counts")
    ap.add_argument("--rates", default="0,1000", help="comma list of total rows/s (0: flood)")
    ap.add_argument("--publisher", choices=("emitter", "server"), default="emitter",
                    help="siopg.Emitter connections, or a siopg server's batching publisher")
    ap.add_argument("--emitters", type=int, default=8, help="concurrent Emitter connections")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--drain", type=float, default=2.0, help="seconds for the workers to read the last rows")
    ap.add_argument("--rooms", type=int, default=100)
    ap.add_argument("--size", type=int, default=100, help="payload bytes per room emit")
    ap.add_argument("--runs", type=int, default=1, help="runs per step (each printed)")
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--client-cpu", default="1", help="CPU of this process (the emitters)")
    ap.add_argument("--settle", type=float, default=1.5)
    ap.add_argument("--json")
    args = ap.parse_args()
    dsn = os.environ.get("SIOPG_TEST_DATABASE_URL")
    if not dsn:
        ap.error("set SIOPG_TEST_DATABASE_URL")
    if args.client_cpu:
        os.sched_setaffinity(0, {int(x) for x in args.client_cpu.split(",")})
    print(f"log ceiling: {args.emitters} emitters ({args.size} B room emits, {args.rooms} rooms) on CPU "
          f"{args.client_cpu}, workers on CPU {args.server_cpu}; per-worker columns are averages")
    print(HEADER)
    results = []
    for n in (int(x) for x in args.workers.split(",") if x):
        for rate in (float(x) for x in args.rates.split(",") if x):
            for _ in range(args.runs):
                try:
                    r = one_step(n, rate, args, dsn)
                except Exception as e:  # noqa: BLE001 - report and go on
                    print(f"{n} workers at {rate:g}/s failed: {e}", file=sys.stderr)
                    continue
                results.append(r)
                show(r)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "steps": results}, indent=1))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
