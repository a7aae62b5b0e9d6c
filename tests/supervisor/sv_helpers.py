"""Real processes for the supervisor tests: a `siopg serve --workers N` and Node clients."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # bench_routing.py runs as a script
    sys.path.append(str(Path(__file__).resolve().parents[1]))
from procs import wait_or_kill

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
CLIENTS_JS = Path(__file__).resolve().parent / "js" / "clients.js"
NODE_MODULES = REPO / "node_modules"
STANDIN_APP = str(APPS / "psio_app.py") + ":create_app"  # python-socketio: tests the supervisor alone

requires_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

_SERVING = re.compile(r"serving .* on http://([\d.]+):(\d+) with")
_READY = re.compile(r"worker (\d+) ready \(slot (\d+), pid (\d+)\)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Supervisor:
    """`python -m siopg.supervisor APP --workers N` on a free loopback port, logs captured."""

    def __init__(self, app: str, workers: int = 2, *args: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None, new_session: bool = False, nofile: int | None = None) -> None:
        self.port = free_port()
        self._tmp: str | None = None
        if "--data-dir" not in args:  # pid file (and embedded Postgres) never land in the repo
            import tempfile

            self._tmp = tempfile.mkdtemp(prefix="siopg-sv-")
            args = (*args, "--data-dir", self._tmp)
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        full_env.update(env or {})
        self.cmd = [sys.executable, "-m", "siopg.supervisor", app, "--workers", str(workers),
                    "--host", "127.0.0.1", "--port", str(self.port), *args]
        if nofile is not None:  # run it with a small open-files limit (RLIMIT_NOFILE)
            self.cmd[1:3] = ["-c", ("import resource, runpy, sys; "
                                    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile})); "
                                    "sys.argv[0] = 'siopg.supervisor'; "
                                    "runpy.run_module('siopg.supervisor', run_name='__main__', alter_sys=True)")]
        self.proc = subprocess.Popen(self.cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     env=full_env, cwd=str(cwd or REPO), text=True, start_new_session=new_session)
        self.lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_log(self, pattern: str, timeout: float = 20.0, start: int = 0) -> re.Match[str]:
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no log line matching {pattern!r}; log:\n" + "\n".join(self.lines[-40:]))
                self._cv.wait(min(left, 0.2))

    def wait_serving(self, timeout: float = 30.0) -> None:
        self.wait_log(_SERVING.pattern, timeout)

    def ready_workers(self) -> dict[int, int]:
        """worker id -> pid, for every "ready" line so far."""
        with self._cv:
            return {int(m[1]): int(m[3]) for line in self.lines if (m := _READY.search(line))}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            wait_or_kill(self.proc, timeout, 5)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        return self.proc.returncode

    def log(self) -> str:
        with self._cv:
            return "\n".join(self.lines)


class NodeClients:
    """N official socket.io-client instances in one Node process, driven line by line."""

    def __init__(self, url: str, n: int, **opts: object) -> None:
        env = dict(os.environ, SIOPG_NODE_MODULES=str(NODE_MODULES))
        self.proc = subprocess.Popen(["node", str(CLIENTS_JS), url, str(n), json.dumps(opts)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def cmd(self, line: str, timeout: float = 60.0) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not result or not result[0]:
            raise AssertionError(f"node clients did not answer {line!r} within {timeout}s")
        return json.loads(result[0])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.cmd("exit", 10)
            except (AssertionError, BrokenPipeError, OSError):
                pass
            wait_or_kill(self.proc, 5)


def check_two_workers_serve(url: str, n: int = 20) -> None:
    """`n` official clients connect, are spread over both workers, and all get a broadcast."""
    clients = NodeClients(url, n)
    try:
        assert clients.cmd("wait 30")["ready"]
        assert len(clients.cmd("ping 10")["workers"]) == 2
        assert clients.cmd("shout 1", 30)["all"]
    finally:
        clients.close()


def http_raw(port: int, data: bytes, timeout: float = 5.0, shut: bool = False) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
