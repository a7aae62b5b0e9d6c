"""/metrics through `siopg serve --workers 2` (Postgres adapter) after real traffic: the new
series of every worker merged, histograms summed, `worker` labels as the logs name workers."""

from __future__ import annotations

import re

import aiohttp

import siopg
from e2e.metrics_flow import check_samples, done, exercise, scrape, scrape_until, total
from sv_helpers import REPO

APP = str(REPO / "tests" / "apps" / "recovery_2s.py") + ":io"


async def test_metrics_of_two_workers_after_real_traffic(supervisor_factory) -> None:  # type: ignore[no-untyped-def]
    sv = supervisor_factory(APP, 2, "--metrics")
    sv.wait_serving()
    async with aiohttp.ClientSession() as http:
        before = await scrape(http, sv.url)
        seen = await exercise(http, sv.url, window=2.0)
        after = await scrape_until(http, sv.url, done)
    assert seen == {"forged": "offset_invalid", "unknown": "unknown_session", "recovered": (True, None),
                    "expired": "expired"}
    check_samples(before, after, siopg.__version__)
    # the Postgres adapter's own: a batch published, its row delivered (summed over workers)
    assert total(after, "siopg_publish_batch_size_count") >= 1
    assert total(after, "siopg_commit_to_delivery_seconds_count") >= 1
    assert total(after, "siopg_pg_listen_reconnects_total") == 0
    histograms = [lbls for (name, lbls) in after if name.startswith("siopg_event_loop_lag_seconds")]
    assert histograms and all("worker" not in dict(lbls) for lbls in histograms)
    # gauges and counters per worker, labelled with the worker ids the logs print
    workers = {dict(lbls)["worker"] for (name, lbls) in after if name == "siopg_build_info"}
    logged = set(re.findall(r"worker=(\d+) ", sv.log()))
    assert len(workers) == 2 and workers <= logged, (workers, logged)
