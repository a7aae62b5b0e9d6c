"""`siopg serve APP --dashboard [--dashboard-auth USER:PASSWORD]`, as real processes."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from procs import wait_or_kill
from sv_helpers import APPS, REPO

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
