"""Fixtures of the fix2 tests: `siopg serve tests/hostile/apps/fix2_app.py:io` processes
(redteam_app.py plus a few test-only handlers and hooks), started with extra environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import redteam_support
from .redteam_support import Raw, RedteamProcess, schema  # noqa: F401  (re-exported)

APP = Path(__file__).resolve().parent / "apps" / "fix2_app.py"


@pytest.fixture
async def fix2_procs(pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]  # noqa: F811
    """`await fix2_procs("A", VAR="value", ...)`: a ready fix2_app process on the test's schema."""
    started: list[RedteamProcess] = []
    monkeypatch.setattr(redteam_support, "APP", APP)

    async def start(name: str, **env: str) -> RedteamProcess:
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            p = RedteamProcess(pg_dsn, schema, name)  # reads os.environ now
        started.append(p)
        return await p.ready()

    yield start
    for p in started:
        await p.stop()
        os.unlink(p.log.name)
