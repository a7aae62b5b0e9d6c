"""Fixtures of the server-layer hostile tests: real `siopg serve` processes of an app file,
the official JS client (tests/e2e's driver) and a hand-written raw client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.conftest import ServerProcess, js, node_driver  # noqa: F401  (fixtures re-exported)

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_APPS = Path(__file__).resolve().parent / "apps"


def serve(app_path: Path, *extra_args: str) -> Iterator[ServerProcess]:
    """Run `siopg serve app_path:io [extra_args]` until the test module ends; fail on a traceback or an
    unclean exit (the server must take hostile input without an unhandled error)."""
    server = ServerProcess(app_path.stem, app_path=app_path, extra_args=extra_args)
    try:
        server.wait_ready()
        yield server
        code = server.stop()
        logs = server.logs()
        assert code == 0, f"server exited with {code}:\n{logs[-4000:]}"
        assert "Traceback" not in logs, logs[-6000:]
    finally:
        server.discard()


@pytest.fixture(scope="module")
def recovery_server() -> Iterator[ServerProcess]:
    """tests/apps' control app with recovery on (memory adapter) and a "mypid" event."""
    yield from serve(HOSTILE_APPS / "server_recovery.py")
