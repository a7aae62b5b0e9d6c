"""Supervisor pieces without processes: balancing, metrics merging, settings, app loading."""

from __future__ import annotations

import argparse

import pytest
from prometheus_client.parser import text_string_to_metric_families

from siopg.supervisor import add_arguments, add_common_arguments, config_from_args
from siopg.supervisor.app_loader import AppLoadError, load_app
from siopg.supervisor.metrics import merge
from siopg.supervisor.pool import State, WorkerHandle, WorkerPool


async def _pool(states: list[State], retiring: list[bool] | None = None) -> WorkerPool:
    pool = WorkerPool(len(states), {}, grace=1, ready_timeout=1)
    for slot, state in enumerate(states):
        w = WorkerHandle(slot + 1, slot)
        w.state = state
        w.retiring = bool(retiring and retiring[slot])
        pool.workers[w.wid] = w
        pool.slots[slot] = w
    return pool


async def test_new_sessions_go_to_the_least_loaded_ready_worker():
    pool = await _pool([State.READY, State.READY, State.READY])
    pool.slots[0].load, pool.slots[1].load, pool.slots[2].load = 5, 1, 3
    picks = []
    for _ in range(6):
        w = pool.pick_new()
        w.assigned += 1
        picks.append(w.wid)
    # worker 2 takes sessions until it catches up with worker 3, then they alternate
    assert picks[:2] == [2, 2]
    assert sorted(picks) == [2, 2, 2, 2, 3, 3]


async def test_ties_are_broken_round_robin():
    pool = await _pool([State.READY, State.READY])
    assert {pool.pick_new().wid for _ in range(4)} == {1, 2}


async def test_retiring_and_draining_workers_get_no_new_sessions():
    pool = await _pool([State.READY, State.READY, State.DRAINING], retiring=[True, False, False])
    assert {pool.pick_new().wid for _ in range(10)} == {2}
    only_retiring = await _pool([State.READY, State.STARTING], retiring=[True, False])
    assert only_retiring.pick_new().wid == 1  # better an old worker than none


async def test_starting_workers_queue_connections_when_none_is_ready():
    pool = await _pool([State.STARTING, State.DEAD])
    assert pool.pick_new().wid == 1
    assert (await _pool([State.DEAD])).pick_new() is None


def test_metrics_merge_labels_every_sample_with_its_worker():
    a = b'# HELP c_total Things\n# TYPE c_total counter\nc_total 3.0\n# HELP g Level\n# TYPE g gauge\ng{ns="/"} 2.0\n'
    b = b'# HELP c_total Things\n# TYPE c_total counter\nc_total 4.0\n'
    families = {f.name: f for f in text_string_to_metric_families(merge({"0": a, "1": b, "2": b"\xff garbage {"}))}
    assert {(s.labels["worker"], s.value) for s in families["c"].samples} == {("0", 3.0), ("1", 4.0)}
    assert families["g"].samples[0].labels == {"ns": "/", "worker": "0"}


def test_metrics_merge_sums_histograms_over_workers():
    def hist(b1: int, inf: int, total: float) -> bytes:
        return (
            "# HELP lag_seconds Lag\n# TYPE lag_seconds histogram\n"
            f'lag_seconds_bucket{{le="0.1"}} {b1}\nlag_seconds_bucket{{le="+Inf"}} {inf}\n'
            f"lag_seconds_count {inf}\nlag_seconds_sum {total}\n"
            '# HELP g Level\n# TYPE g gauge\ng 1.0\n'
        ).encode()

    families = {f.name: f for f in text_string_to_metric_families(merge({"1": hist(2, 3, 0.5), "2": hist(1, 4, 2.0)}))}
    samples = {(s.name, s.labels.get("le")): s for s in families["lag_seconds"].samples}
    assert samples[("lag_seconds_bucket", "0.1")].value == 3 and samples[("lag_seconds_bucket", "+Inf")].value == 7
    assert samples[("lag_seconds_count", None)].value == 7 and samples[("lag_seconds_sum", None)].value == 2.5
    assert all("worker" not in s.labels for s in samples.values())  # one histogram per machine
    assert {s.labels["worker"] for s in families["g"].samples} == {"1", "2"}  # gauges stay per worker


def test_flags_default_from_siopg_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SIOPG_WORKERS", "3")
    monkeypatch.setenv("SIOPG_PORT", "4321")
    monkeypatch.setenv("SIOPG_DATABASE_URL", "postgresql://db/x")
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone-elses/db")  # Django's, Heroku's: ignored
    monkeypatch.setenv("SIOPG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SIOPG_NODE_ID", "web7")
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["app:io"]))
    assert (config.workers, config.port, config.database_url, config.node_id) == (3, 4321, "postgresql://db/x", "web7")
    assert config.effective_pid_file == tmp_path / "siopg-4321.pid"
    assert config_from_args(parser.parse_args(["app:io", "--workers", "5"])).workers == 5
    with pytest.raises(ValueError):
        config_from_args(parser.parse_args(["app:io", "--node-id", "Web.7"]))
    with pytest.raises(ValueError):
        config_from_args(parser.parse_args(["app:io", "--workers", "0"]))


def test_app_references(tmp_path, monkeypatch):
    (tmp_path / "myapp.py").write_text("io = 'the io'\nclass ns:\n    inner = 'nested'\n")
    monkeypatch.chdir(tmp_path)
    assert load_app("myapp.py:io") == "the io"
    assert load_app("myapp:ns.inner") == "nested"
    with pytest.raises(AppLoadError, match="no attribute"):
        load_app("myapp.py:nope")
    with pytest.raises(AppLoadError, match="no such file"):
        load_app("missing.py:io")
    with pytest.raises(AppLoadError, match="cannot import"):
        load_app("missing_module_xyz:io")


def test_metrics_auth_reads_the_authorization_header_of_the_head() -> None:
    import base64

    from siopg.supervisor.supervisor import metrics_auth_ok

    def head(*headers: str) -> bytes:
        return ("GET /metrics HTTP/1.1\r\nHost: x\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode()

    good = "Basic " + base64.b64encode(b"prom:p:w").decode()
    assert metrics_auth_ok(head(f"Authorization: {good}"), "prom:p:w")
    assert metrics_auth_ok(head(f"authorization:{good}"), "prom:p:w")  # any case, no space
    assert not metrics_auth_ok(head(), "prom:p:w")
    assert not metrics_auth_ok(head("Authorization: Basic " + base64.b64encode(b"prom:x").decode()), "prom:p:w")
    assert not metrics_auth_ok(head("Authorization: Bearer abc"), "prom:p:w")
