#!/usr/bin/env python3
"""The Postgres adapter's log: publish throughput and recovery time, on a real PostgreSQL.

    SIOPG_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/cluster_log.py

1. publish: N broadcasts emitted as fast as one process can, batched by the publisher (at most
   one INSERT+NOTIFY transaction in flight); reports committed rows/s, the number of
   batches, and how long until a second server's reader has read them all.
2. recovery (server side): a session on server A misses 1000 packets emitted to its room
   (plus 1000 to another room); time of `restore_session` on server B.
3. recovery (end to end): the official JS client drops from A, 1000 packets are emitted, it
   reconnects through a TCP balancer to B; time from reconnect() to the 1000th replayed
   event, measured inside the client (bench/cluster_recovery_client.mjs).
Each figure is the median of --runs runs, each in a fresh schema. Without the env variable an
embedded pgserver is started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import asyncpg  # noqa: E402

from siopg.adapter.base import Session  # noqa: E402
from siopg.adapter.postgres.migrations import migrate, quote_ident  # noqa: E402


async def fresh_schema(dsn: str) -> str:
    name = "siopg_bench_" + secrets.token_hex(4)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, name)
    finally:
        await conn.close()
    return name


async def drop_schema(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA {quote_ident(name)} CASCADE")
    finally:
        await conn.close()


async def bench_publish(dsn: str, n: int, size: int) -> dict[str, float]:
    from pg.harness import Node

    schema = await fresh_schema(dsn)
    a, b = await Node(dsn, schema, "A").start(), await Node(dsn, schema, "B").start()
    try:
        pub = a.factory.cluster.publisher
        listener_b = b.factory.cluster.listener
        payload = "x" * size
        batches0 = pub.batches
        start = time.perf_counter()
        for i in range(n):
            a.io.emit("tick", i, payload)
        await pub.flush(120)
        committed = time.perf_counter() - start
        conn = await asyncpg.connect(dsn)
        head = await conn.fetchval(f"SELECT max(id) FROM {quote_ident(schema)}.packets")
        await conn.close()
        assert await listener_b.wait_for(head, 120)
        read = time.perf_counter() - start
        return {"rows_per_s": n / committed, "batches": pub.batches - batches0, "read_by_b_s": read}
    finally:
        await a.stop()
        await b.stop()
        await drop_schema(dsn, schema)


async def bench_restore(dsn: str, missed: int) -> float:
    from pg.harness import Node

    schema = await fresh_schema(dsn)
    a, b = await Node(dsn, schema, "A").start(), await Node(dsn, schema, "B").start()
    try:
        head = a.adapter().current_offset()
        await a.adapter().persist_session(Session("sid1", "pid1", "/", ["sid1", "room"], {"u": 1}, head))
        for i in range(missed):
            a.io.to("room").emit("ev", i, {"k": "v"})
            a.io.to("other").emit("ev", i)
        await a.factory.cluster.publisher.flush(60)
        conn = await asyncpg.connect(dsn)
        top = await conn.fetchval(f"SELECT max(id) FROM {quote_ident(schema)}.packets")
        await conn.close()
        await b.factory.cluster.listener.wait_for(top, 60)
        start = time.perf_counter()
        restored = await b.adapter().restore_session("pid1", None)
        elapsed = time.perf_counter() - start
        assert restored is not None and len(restored.missed_packets) == missed
        return elapsed
    finally:
        await a.stop()
        await b.stop()
        await drop_schema(dsn, schema)


async def bench_recovery_e2e(dsn: str, missed: int) -> float:
    """Timed inside the JS client (bench/cluster_recovery_client.mjs): reconnect() -> n-th event."""
    import json

    from pg.harness import Node, SwitchProxy

    schema = await fresh_schema(dsn)
    a, b = await Node(dsn, schema, "A").start(), await Node(dsn, schema, "B").start()
    proxy = await SwitchProxy(a.port).start()
    node = await asyncio.create_subprocess_exec(
        "node", str(ROOT / "bench" / "cluster_recovery_client.mjs"), proxy.url, str(missed),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    assert node.stdin is not None and node.stdout is not None

    async def expect(kind: str) -> dict[str, Any]:
        while True:
            line = await asyncio.wait_for(node.stdout.readline(), 30)  # type: ignore[union-attr]
            if not line:
                raise RuntimeError("recovery client exited")
            msg = json.loads(line)
            if msg["type"] == kind:
                return msg

    try:
        sid = (await expect("connected"))["id"]
        node.stdin.write(b"drop\n")
        await expect("dropped")
        conn = await asyncpg.connect(dsn)
        q = quote_ident(schema)
        while not await conn.fetchval(f"SELECT count(*) FROM {q}.sessions WHERE sid = $1 AND expires_at IS NOT NULL", sid):
            await asyncio.sleep(0.01)
        for i in range(missed):
            a.io.to("room").emit("ev", i)
        await a.factory.cluster.publisher.flush(60)
        top = await conn.fetchval(f"SELECT max(id) FROM {q}.packets")
        await conn.close()
        await b.factory.cluster.listener.wait_for(top, 60)
        proxy.target = b.port
        node.stdin.write(b"reconnect\n")
        done = await expect("done")
        assert done["recovered"] and done["ordered"] and done["id"] == sid, done
        return done["ms"] / 1000
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
        await proxy.close()
        await a.stop()
        await b.stop()
        await drop_schema(dsn, schema)


async def main_async(args: argparse.Namespace, dsn: str) -> None:
    for size in (16, 1000):
        results = [await bench_publish(dsn, args.messages, size) for _ in range(args.runs)]
        rate = statistics.median(r["rows_per_s"] for r in results)
        batches = statistics.median(r["batches"] for r in results)
        read = statistics.median(r["read_by_b_s"] for r in results)
        print(f"publish {args.messages} broadcasts ({size} B payload): {rate:,.0f} rows/s committed, "
              f"{batches:.0f} batches, all read by the other server after {read * 1000:.0f} ms")
    restore = [await bench_restore(dsn, 1000) for _ in range(args.runs)]
    print(f"restore_session with 1000 missed packets (server side): median {statistics.median(restore) * 1000:.1f} ms"
          f" (runs: {', '.join(f'{x * 1000:.1f}' for x in restore)})")
    e2e = [await bench_recovery_e2e(dsn, 1000) for _ in range(args.runs)]
    print(f"JS client: reconnect -> 1000th missed packet received: median {statistics.median(e2e) * 1000:.0f} ms"
          f" (runs: {', '.join(f'{x * 1000:.0f}' for x in e2e)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    dsn = os.environ.get("SIOPG_TEST_DATABASE_URL")
    server = None
    if not dsn:
        import tempfile

        import pgserver

        server = pgserver.get_server(tempfile.mkdtemp(prefix="siopg-bench-pg-"), cleanup_mode="stop")
        dsn = server.get_uri()
    try:
        asyncio.run(main_async(args, dsn))
    finally:
        if server is not None:
            server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
