"""The database the workers share: a given URL, or an embedded PostgreSQL (pgserver).

The supervisor migrates it once before starting workers, so workers never race on DDL.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("siopg.supervisor")


class DatabaseError(Exception):
    """The database cannot be reached, started or migrated (message says why)."""


class EmbeddedPostgres:
    """A pgserver instance in `data_dir/pg`, stopped with the supervisor."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._server: Any = None

    def start(self) -> str:
        try:
            import pgserver
        except ImportError as exc:
            raise DatabaseError(
                "several workers need PostgreSQL: pass --database-url, or install the embedded"
                " server with `pip install 'siopg[embedded]'`"
            ) from exc
        pgdata = self.data_dir / "pg"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", pgdata)
        try:
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
    except ImportError as exc:
        raise DatabaseError(f"the Postgres adapter is not available: {exc}") from exc
    except Exception as exc:
        raise DatabaseError(f"database {redact(dsn)}: {type(exc).__name__}: {exc}") from exc


def redact(dsn: str) -> str:
    """The DSN without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
