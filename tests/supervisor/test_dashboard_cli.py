"""`siopg serve APP --dashboard [--dashboard-auth USER:PASSWORD]`, as real processes."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from procs import wait_or_kill
from sv_helpers import APPS, REPO, free_port

APP = str(APPS / "siopg_app.py") + ":io"


class Serve:
    """`python -m siopg serve APP --port 0 ...` (one process), stopped by `stop()`."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIOPG_DASHBOARD")}
        full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "siopg", "serve", APP, "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env, cwd=str(REPO), text=True,
        )
        self.output: list[str] = []
        self._serving = threading.Event()
        self._eof = threading.Event()
        self.url = ""
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            m = re.search(r"serving on (http://[\d.]+:\d+)", line)
            if m:
                self.url = m[1]
                self._serving.set()
        self._serving.set()
        self._eof.set()

    def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit code, once the process ended and all its output was read."""
        code = self.proc.wait(timeout)
        assert self._eof.wait(5)
        return code

    def wait_serving(self, timeout: float = 30.0) -> str:
        assert self._serving.wait(timeout) and self.url, "not serving; output:\n" + "\n".join(self.output)
        return self.url

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            wait_or_kill(self.proc, 10, 5)
        return self.proc.returncode


@pytest.fixture
def serve() -> Iterator:
    started: list[Serve] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Serve:
        s = Serve(*args, env=env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def get(url: str, credentials: str | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url)
    if credentials is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


def test_dashboard_flag_with_basic_auth(serve) -> None:
    url = serve("--dashboard", "--dashboard-auth", "admin:s3cr:et").wait_serving()
    status, headers, _ = get(url + "/dashboard")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
    assert get(url + "/dashboard", "admin:wrong")[0] == 401
    status, _, body = get(url + "/dashboard", "admin:s3cr:et")  # the password may hold a colon
    assert status == 200 and "<html" in body.lower()
    status, _, body = get(url + "/dashboard/stats.json", "admin:s3cr:et")
    assert status == 200 and json.loads(body)["sockets"] == 0
    assert get(url + "/socket.io/?EIO=4&transport=polling")[0] == 200  # the app itself is not guarded


def test_dashboard_from_env_and_off_by_default(serve) -> None:
    open_url = serve(env={"SIOPG_DASHBOARD": "1"}).wait_serving()
    off_url = serve().wait_serving()
    metrics_url = serve("--metrics").wait_serving()
    status, _, body = get(open_url + "/dashboard/stats.json")
    assert status == 200 and "counters" in json.loads(body)
    assert get(off_url + "/dashboard")[0] == 404
    assert get(off_url + "/metrics")[0] == 404  # opt-in: --metrics
    status, _, body = get(metrics_url + "/metrics")
    assert status == 200 and "siopg_connected_sockets" in body


def test_dashboard_auth_from_env(serve) -> None:
    url = serve("--dashboard", env={"SIOPG_DASHBOARD_AUTH": "ops:pw"}).wait_serving()
    assert get(url + "/dashboard")[0] == 401
    assert get(url + "/dashboard", "ops:pw")[0] == 200


def test_malformed_dashboard_auth_is_a_usage_error(serve) -> None:
    s = serve("--dashboard", "--dashboard-auth", "no-colon")
    assert s.wait_exit() == 2
    assert "--dashboard-auth: dashboard credentials must look like USER:PASSWORD" in "\n".join(s.output)


def test_unauthenticated_dashboard_on_a_public_address_is_refused(serve, supervisor_factory) -> None:
    """`--dashboard` without auth on a non-loopback host: a usage error unless --dashboard-insecure."""
    s = serve("--dashboard", "--host", "0.0.0.0")
    assert s.wait_exit() == 2
    assert "--dashboard-insecure" in "\n".join(s.output)
    sv = supervisor_factory(APP, 2, "--dashboard", "--host", "0.0.0.0")
    assert sv.proc.wait(30) == 2
    assert "not a loopback address" in sv.log()
    ok = serve("--dashboard", "--host", "0.0.0.0", "--dashboard-insecure")
    url = ok.wait_serving()
    assert "no authentication" in "\n".join(ok.output)
    assert get(url.replace("0.0.0.0", "127.0.0.1") + "/dashboard/stats.json")[0] == 200


def test_each_worker_serves_the_dashboard(supervisor_factory) -> None:
    sv = supervisor_factory(APP, 2, "--dashboard", env={"SIOPG_DASHBOARD_AUTH": "ops:pw"})
    sv.wait_serving()
    assert get(sv.url + "/dashboard")[0] == 401
    pids = set()
    for _ in range(6):  # requests without a sid go to any worker: every one answers
        status, _, body = get(sv.url + "/dashboard/stats.json", "ops:pw")
        assert status == 200
        pids.add(json.loads(body)["pid"])
    assert pids <= set(sv.ready_workers().values()), (pids, sv.ready_workers())


def test_metrics_auth_and_port_in_one_process(serve) -> None:
    port = free_port()
    s = serve("--metrics-port", str(port), "--metrics-auth", "prom:pw")
    url = s.wait_serving()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    assert get(url + "/metrics")[0] == 404  # not on the app's port
    assert get(metrics_url)[0] == 401
    assert get(metrics_url, "prom:wrong")[0] == 401
    status, _, body = get(metrics_url, "prom:pw")
    assert status == 200 and "siopg_connected_sockets" in body
    guarded = serve("--metrics", "--metrics-auth", "prom:pw").wait_serving()  # on the app's port, guarded
    assert get(guarded + "/metrics")[0] == 401 and get(guarded + "/metrics", "prom:pw")[0] == 200


def standalone_dashboard(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIOPG_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.Popen([sys.executable, "-m", "siopg", "dashboard", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, cwd=str(REPO), text=True)


def test_metrics_port_with_workers_and_the_standalone_dashboard(supervisor_factory, sv_dsn: str) -> None:
    port = free_port()
    sv = supervisor_factory(APP, 2, "--metrics-port", str(port), "--metrics-auth", "prom:pw")
    sv.wait_serving()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    assert get(metrics_url)[0] == 401
    status, _, body = get(metrics_url, "prom:pw")
    assert status == 200 and 'worker="1"' in body and "siopg_supervisor_workers_ready 2" in body
    assert get(f"http://127.0.0.1:{port}/dashboard", "prom:pw")[0] == 404  # /metrics alone on that port
    assert get(sv.url + "/metrics")[0] != 200  # not on the app's port

    # `siopg dashboard` on an ops box: the same cluster, read from the database
    proc = standalone_dashboard("--database-url", sv_dsn, "--port", "0", "--dashboard-auth", "ops:pw")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"dashboard on (http://[\d.]+:\d+)/dashboard", line)
        assert m, line
        doc: dict = {}
        for _ in range(50):  # the workers publish every 2 s
            status, _, body = get(m[1] + "/dashboard/stats.json", "ops:pw")
            assert status == 200
            doc = json.loads(body)
            live = [s for s in doc["servers"] if s["health"] != "down"]  # earlier tests' servers show as down
            if doc["server_count"] == 2 and all(s["health"] == "ok" for s in live):
                break
            time.sleep(0.2)
        assert doc["server_count"] == 2 and sorted(s["worker"] for s in live) == ["1", "2"], doc
        assert get(m[1] + "/dashboard/stats.json")[0] == 401
    finally:
        proc.terminate()
        wait_or_kill(proc, 10, 5)
    assert proc.returncode == 0


def test_standalone_dashboard_usage_errors() -> None:
    for args, code, message in (
        ((), 2, "--database-url"),
        (("--database-url", "postgresql://nobody@127.0.0.1:1/x", "--host", "0.0.0.0"), 2, "--dashboard-insecure"),
        (("--database-url", "postgresql://nobody@127.0.0.1:1/x", "--port", "0"), 1, "siopg dashboard: "),
    ):
        proc = standalone_dashboard(*args)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == code and message in out, (args, out)
        assert "Traceback" not in out
