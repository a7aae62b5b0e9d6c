"""The database the workers share: a given URL, or an embedded PostgreSQL (pgserver).

The supervisor migrates it once before starting workers, so workers never race on DDL.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from siopg.errors import SiopgError
from siopg.runtime import redact

log = logging.getLogger("siopg.supervisor")
#: platformdirs (under pgserver) warns when XDG_RUNTIME_DIR is unset, as on most servers and
#: containers: noise on a newcomer's first screen, with nothing to act on
XDG_WARNING = ".*XDG_RUNTIME_DIR"



class DatabaseError(SiopgError):
    """The database cannot be reached, started or migrated (message says why)."""


class EmbeddedPostgres:
    """A pgserver instance in `data_dir/pg`, stopped with the supervisor."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._server: Any = None

    @staticmethod
    def ensure_available() -> None:
        """Raise DatabaseError saying what to install when pgserver is missing."""
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=XDG_WARNING)
                import pgserver  # noqa: F401
        except ImportError as exc:
            raise DatabaseError(
                "several workers need PostgreSQL: pass --database-url, or install the embedded"
                " server with `pip install 'siopg[embedded]'`"
            ) from exc

    def start(self) -> str:
        self.ensure_available()
        import pgserver
        pgdata = self.data_dir / "pg"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", pgdata)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=XDG_WARNING)
                self._server = pgserver.get_server(str(pgdata), cleanup_mode="stop")
        except Exception as exc:
            raise DatabaseError(f"embedded PostgreSQL failed to start in {pgdata}: {exc}") from exc
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.cleanup()
            except Exception:
                log.exception("stopping the embedded PostgreSQL failed")
            self._server = None


async def _migrate(dsn: str) -> None:
    """Apply pending migrations (the Postgres adapter's migrator owns the schema)."""
    from siopg.adapter.postgres import migrations

    applied = await migrations.migrate_dsn(dsn)
    if applied:
        log.info("applied migrations %s", ", ".join(map(str, applied)))


async def _ping(dsn: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return str(await conn.fetchval("SELECT version()"))
    finally:
        await conn.close()


def prepare_database(dsn: str, migrate: bool = True) -> str:
    """Check that `dsn` answers and apply migrations; returns the server version string."""
    async def go() -> str:
        version = await _ping(dsn)
        if migrate:
            await _migrate(dsn)
        return version

    try:
        return asyncio.run(go())
    except DatabaseError:
        raise
    except Exception as exc:
        raise DatabaseError(f"database {redact(dsn)}: {type(exc).__name__}: {exc}") from exc


def inspect_database(dsn: str) -> tuple[str, int, list[int]]:
    """`--check`: the server version, the schema's version and the migrations `serve` would apply.

    Read-only: nothing is created or migrated.
    """
    async def go() -> tuple[str, int, list[int]]:
        import asyncpg

        from siopg.adapter.postgres.migrations import pending_versions

        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            version = str(await conn.fetchval("SELECT version()"))
            return (version, *await pending_versions(conn))
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except Exception as exc:
        raise DatabaseError(f"database {redact(dsn)}: {type(exc).__name__}: {exc}") from exc


def _transient(exc: BaseException) -> bool:
    """An error that waiting may cure (the server is down or starting), not a misconfiguration."""
    cause = exc.__cause__ if isinstance(exc, DatabaseError) else exc
    if isinstance(cause, (OSError, asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    import asyncpg

    return isinstance(cause, (asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
                              asyncpg.ConnectionDoesNotExistError))


def wait_and_prepare(dsn: str, wait: float, retry_max: float = 5.0) -> str:
    """`prepare_database`, retried while the database is unreachable, for up to `wait` seconds.

    `siopg serve` started during a Postgres outage waits for it (one log line per attempt,
    backoff bounded by `retry_max`) instead of exiting; a misconfiguration (bad password, no
    such database) still fails at once. `wait` <= 0: a single attempt.
    """
    deadline = time.monotonic() + max(0.0, wait)
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            return prepare_database(dsn)
        except DatabaseError as exc:
            left = deadline - time.monotonic()
            if not _transient(exc):
                raise
            if left <= 0:
                raise DatabaseError(f"{exc}; is PostgreSQL running and reachable? (gave up after {attempt} attempts"
                                    f" in {wait:.0f}s: --database-wait sets how long to wait)") from exc.__cause__
            log.warning("database unreachable (attempt %d: %s); retrying in %.1fs (giving up in %.0fs)",
                        attempt, exc, min(delay, left), left)
            time.sleep(min(delay, left))
            delay = min(delay * 2, retry_max)
