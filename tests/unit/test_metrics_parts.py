"""The pieces of the metrics: histograms, the loop-lag probe, causes and reasons, the exposition."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import siopg
from siopg._histogram import LATENCY_BUCKETS, Histogram
from siopg.server.counters import Metrics
from siopg.server.loop_lag import LoopLagProbe


def test_histogram_buckets_are_le_and_cumulative() -> None:
    h = Histogram((1, 5, 10))
    for value in (0.5, 1, 1.5, 5, 7, 11, 100):
        h.observe(value)
    assert h.cumulative() == [(1, 2), (5, 4), (10, 5), (float("inf"), 7)]
    assert h.count == 7 and h.sum == pytest.approx(126.0)
    assert h.quantile(0.5) == 5 and h.quantile(0.99) == float("inf")
    assert Histogram((1,)).quantile(0.5) is None


def test_histograms_add_bucket_by_bucket() -> None:
    a, b = Histogram((1, 2)), Histogram((1, 2))
    a.observe(0.5)
    b.observe(1.5)
    b.observe(3)
    a.add(b)
    assert a.cumulative() == [(1, 1), (2, 2), (float("inf"), 3)] and a.sum == 5.0
    with pytest.raises(ValueError, match="different buckets"):
        a.add(Histogram((1, 3)))
    with pytest.raises(ValueError, match="at least one"):
        Histogram(())


def test_unknown_causes_and_reasons_fold() -> None:
    m = Metrics()
    assert m.recovery_failed("expired") == "expired" and m.recovery_failed_expired == 1
    assert m.recovery_failed("made-up") == "error" and m.recovery_failed_error == 1
    m.disconnected("ping timeout")
    m.disconnected("a reason nobody knows")
    assert m.disconnections["ping timeout"] == 1 and m.disconnections["other"] == 1
    assert len(m.disconnections) == 10  # bounded, whatever reasons arrive


async def test_loop_lag_probe_sees_a_blocked_loop() -> None:
    hist = Histogram(LATENCY_BUCKETS)
    probe = LoopLagProbe(hist, interval=0.01)
    probe.start()
    try:
        time.sleep(0.1)  # blocks the loop: the probe due in 10 ms runs ~90 ms late
        async with asyncio.timeout(5):
            while hist.count == 0:
                await asyncio.sleep(0.005)
        assert hist.sum >= 0.05
    finally:
        probe.stop()
    count = hist.count
    await asyncio.sleep(0.03)
    assert hist.count == count  # stopped: no more probes


async def test_exposition_has_the_new_families() -> None:
    io = siopg.Server()
    io.metrics.loop_lag.observe(0.002)
    io.metrics.disconnected("transport close")
    io.metrics.recovery_failed("offset_invalid")
    text = generate_latest(io.metrics_registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["siopg_build_info"].samples[0].labels == {"version": siopg.__version__}
    failed = {s.labels["cause"]: s.value for s in families["siopg_recovery_failed"].samples}
    assert failed["offset_invalid"] == 1 and set(failed) >= {"unknown_session", "expired", "limit", "unavailable"}
    gone = {s.labels["reason"]: s.value for s in families["siopg_disconnections"].samples}
    assert gone["transport close"] == 1
    lag = {s.name: s.value for s in families["siopg_event_loop_lag_seconds"].samples if "le" not in s.labels}
    assert lag["siopg_event_loop_lag_seconds_count"] == 1
    for name in ("siopg_bytes_sent", "siopg_bytes_received", "siopg_acks_answered", "siopg_acks_timed_out",
                 "siopg_packets_replayed"):
        assert families[name].type == "counter"
    await io.close()
