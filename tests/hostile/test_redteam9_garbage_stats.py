"""Red team 9: a `stats` value that is not the snapshot siopg writes (another process wrote it).

A real `siopg dashboard --database-url` process reads a migrated schema where one live server
row holds a well-formed snapshot and another holds valid JSON of the wrong shape. Before the
fix one such row made `merge` raise on every read: the page said "error" and stats.json was a
503 for as long as that row lived, hiding the whole cluster. The bad row must show as a server
with "no stats", the good one with its numbers.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import asyncpg
import pytest
from procs import wait_or_kill

from hostile.server_fixtures import ROOT
from hostile.supervisor_helpers import free_port, private_database, wait_until  # noqa: F401
from siopg.adapter.postgres.migrations import migrate_dsn

GOOD = {"v": 1, "id": "good", "t": 1000.0, "started": 900.0, "interval": 2.0, "sockets": 7, "rooms": 1,
        "transports": {"websocket": 7}, "namespaces": [["/", 7, 1]], "counters": {"packets_in": 5},
        "rates": {"packets_in": 1.0}, "history": {"step": 5.0, "t": [1000.0], "sockets": [7], "counters": {}}}
GARBAGE = [
    {"counters": [1, 2]},
    {"namespaces": "abc"},
    {"t": "x", "started": 1},
    {"sockets": "5"},
    {"history": {"t": [1, 2]}, "t": 3},
    {"rates": {"packets_in": "x"}},
    {"heartbeat_timeout": "z"},
    {"counters": {"packets_in": "zz"}},
    {"transports": ["websocket"]},
    {"rates": {"packets_in": "1.5"}},  # read as the number it spells (the page formats it as one)
]
#: what the page says of the bad row: the snapshots merge cannot read are dropped
EXPECTED = {json.dumps({"rates": {"packets_in": "1.5"}}): "ok"}


async def _write_rows(dsn: str, docs: dict[str, object]) -> None:
    await migrate_dsn(dsn, "siopg")
    conn = await asyncpg.connect(dsn)
    try:
        for uid, doc in docs.items():
            await conn.execute("INSERT INTO siopg.nodes (uid, nsp, stats, stats_at) VALUES ($1, '', $2::jsonb, now())",
                               uid, json.dumps(doc))
    finally:
        await conn.close()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("garbage", GARBAGE, ids=[json.dumps(g)[:30] for g in GARBAGE])
def test_a_malformed_snapshot_does_not_hide_the_cluster(private_database, garbage):  # noqa: F811 - fixture
    asyncio.run(_write_rows(private_database, {"good": GOOD, "bad": garbage}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "siopg", "dashboard", "--database-url", private_database,
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_until(lambda: proc.poll() is not None or _listening(port), 20, "the dashboard to listen", 0.05)
        status, body = _get(f"http://127.0.0.1:{port}/dashboard/stats.json")
        assert status == 200, body[:300]
        doc = json.loads(body)
        health = {s["id"]: s["health"] for s in doc["servers"]}
        assert health == {"bad": EXPECTED.get(json.dumps(garbage), "no stats"), "good": "ok"}
        assert doc["sockets"] == 7
        status, page = _get(f"http://127.0.0.1:{port}/dashboard")
        assert status == 200 and b'data-state="static"' in page, page[:300]
    finally:
        proc.terminate()
        wait_or_kill(proc, 10, 5)
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert "Traceback" not in output, output[-4000:]
