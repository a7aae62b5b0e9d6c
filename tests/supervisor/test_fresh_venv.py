"""End to end from nothing: a new venv, `pip install siopg[embedded]`, an empty directory,
`siopg serve app.py:io --workers 2`, official clients. Slow and needs a package index, so it
runs only with SIOPG_FRESH_VENV=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from sv_helpers import requires_node
from sv_helpers import APPS, REPO, check_two_workers_serve, free_port, http_raw

pytestmark = [
    requires_node,
    pytest.mark.skipif(os.environ.get("SIOPG_FRESH_VENV") != "1", reason="set SIOPG_FRESH_VENV=1 to run"),
]


def test_fresh_venv_fresh_directory(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{REPO}[embedded]"],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(APPS / "siopg_app.py", work / "app.py")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL", "VIRTUAL_ENV")}
    proc = subprocess.Popen([str(venv / "bin" / "siopg"), "serve", "app.py:io", "--workers", "2", "--port", str(port)],
                            cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end:
            try:
                if b"ready: 2/2" in http_raw(port, b"GET /readyz HTTP/1.1\r\n\r\n", timeout=2):
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.3)
        else:
            raise AssertionError("never ready")
        assert (work / ".siopg-data" / "pg").is_dir()
        check_two_workers_serve(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
