"""siopg side of bench/cluster_fanout.py (twin: bench/apps/node_cluster_fanout.mjs).

Like siopg_fanout.py, but a cluster member: every process serves its share of the clients
and the process that receives "start" broadcasts the ticks to the whole cluster through
Postgres. Load processes report "progress" to their own server; servers forward it to the
sender with server_side_emit, which keeps the in-flight window honest across processes.
Env: SIOPG_BENCH_DSN, SIOPG_BENCH_SCHEMA, SIOPG_BENCH_RECOVERY=1 (CSR on: offsets on ticks),
SIOPG_BENCH_ASYNC_COMMIT=1 (synchronous_commit=False).
Run: python -m siopg serve bench/apps/siopg_cluster_fanout.py:io --port PORT
"""

from __future__ import annotations

import os

import _instruments
from _siopg_fanout_common import Fanout

import siopg

io = siopg.Server(
    adapter=siopg.PostgresAdapter(
        os.environ["SIOPG_BENCH_DSN"],
        schema=os.environ.get("SIOPG_BENCH_SCHEMA", "siopg"),
        synchronous_commit=os.environ.get("SIOPG_BENCH_ASYNC_COMMIT") != "1",
    ),
    write_coalesce_ms=float(os.environ.get("SIOPG_BENCH_WRITE_COALESCE_MS") or 0),
    connection_state_recovery=siopg.Recovery() if os.environ.get("SIOPG_BENCH_RECOVERY") == "1" else None,
)
_instruments.install(io)  # SIOPG_BENCH_STATS=file: SIGUSR2 dumps gc/deliver/flush/loop-lag counters
Fanout().serve(io, forward=True)
