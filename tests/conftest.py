"""Shared fixtures: a real PostgreSQL for the tests that need one.

`SIOPG_TEST_DATABASE_URL` names a server to use (CI and developers may point it at a local
Postgres); without it an embedded PostgreSQL from `pgserver` is started once per session, so
the suite passes on a machine with no database running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A DSN of a real, empty-enough PostgreSQL database for this test session."""
    dsn = os.environ.get("SIOPG_TEST_DATABASE_URL")
    if dsn:
        yield dsn
        return
    import pgserver  # started lazily: only tests that need Postgres pay for it

    data_dir = tempfile.mkdtemp(prefix="siopg-test-pg-")
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
