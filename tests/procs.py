"""Child-process helpers shared by the suites (tests/ is on sys.path through its conftest.py)."""

from __future__ import annotations

import subprocess
from typing import Any


def wait_or_kill(proc: "subprocess.Popen[Any]", timeout: float, kill_wait: float | None = None) -> bool:
    """Wait up to `timeout` s for `proc` to exit, else SIGKILL and reap it (waiting `kill_wait` s,
    None: as long as it takes). True when it exited on its own, so no test leaves a process behind."""
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_wait)
        return False
