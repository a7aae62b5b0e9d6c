"""Schema migrations: plain versioned SQL files applied once, in order, under an advisory lock.

Files live in the project's `migrations/` folder, named `NNNN_description.sql`. They are
written against the placeholders `@schema@` (quoted identifier) and `@schema_literal@`
(quoted string), so the whole schema can live under any name (default "siopg") beside the
user's own tables. Applied versions are recorded in `<schema>.schema_version`.

    siopg migrate --database-url postgres://... [--schema siopg]   (or SIOPG_DATABASE_URL)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from siopg.errors import SiopgError
from siopg.runtime import DATABASE_ENV, database_url_from_env, ignored_database_url_notice, redact

DEFAULT_SCHEMA = "siopg"
_LOCK_CLASS = 1936289640  # advisory lock namespace for migrations (the log uses ...639)
_FILE_RE = re.compile(r"^(\d+)_[\w.-]+\.sql$")


class SchemaError(RuntimeError, SiopgError):
    """The database schema is missing or older than this siopg needs."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def quote_ident(name: str) -> str:
    """A safely quoted SQL identifier (any string, including quotes, is allowed)."""
    if not name or "\x00" in name:
        raise ValueError("an SQL identifier must be a non-empty string without NUL")
    return '"' + name.replace('"', '""') + '"'


def validate_schema(schema: str) -> str:
    """Check a schema name; the NOTIFY channel `siopg#<schema>` must fit in 63 bytes."""
    if not isinstance(schema, str) or not schema or "\x00" in schema:
        raise ValueError("schema must be a non-empty string without NUL")
    if len(schema.encode()) > 57:
        raise ValueError("schema name too long (at most 57 bytes)")
    return schema


def channel_name(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema (the schema already isolates a cluster)."""
    return "siopg#" + schema


def quote_literal(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL is not allowed in SQL strings")
    return "'" + value.replace("'", "''") + "'"


def migrations_dir() -> Path:
    """Where the SQL files are: inside the package (the repository's `migrations/` links here),
    so a wheel install carries them."""
    folder = Path(__file__).resolve().parent / "sql"
    if not folder.is_dir():
        raise FileNotFoundError(f"siopg migrations folder not found at {folder}")
    return folder


def load_migrations(folder: Path | None = None) -> list[Migration]:
    folder = folder or migrations_dir()
    found: list[Migration] = []
    for path in sorted(folder.iterdir()):
        match = _FILE_RE.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), path.name, path.read_text("utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {folder}")
    return sorted(found, key=lambda m: m.version)


_PLACEHOLDER_RE = re.compile(r"@schema(_literal)?@")


def render(sql: str, schema: str) -> str:
    """Substitute the placeholders in ONE pass: text coming from the schema name is never
    scanned again (a name containing `@schema@` must not open a second substitution)."""
    ident, literal = quote_ident(schema), quote_literal(schema)
    return _PLACEHOLDER_RE.sub(lambda m: literal if m.group(1) else ident, sql)


def latest_version() -> int:
    migrations = load_migrations()
    return migrations[-1].version if migrations else 0


async def _applied_versions(conn: asyncpg.Connection, schema: str) -> set[int]:
    exists = await conn.fetchval(
        "SELECT to_regclass(format('%I.schema_version', $1::text)) IS NOT NULL", schema
    )
    if not exists:
        return set()
    rows = await conn.fetch(f"SELECT version FROM {quote_ident(schema)}.schema_version")
    return {r["version"] for r in rows}


async def migrate(target: asyncpg.Connection | str, schema: str = DEFAULT_SCHEMA) -> list[int]:
    """Apply every pending migration in one transaction; returns the versions applied.

    `target` is a connection or a DSN. Concurrent callers (several workers starting at once)
    serialise on an advisory lock, so each file runs exactly once.
    """
    if isinstance(target, str):
        return await migrate_dsn(target, schema)
    conn = target
    q = quote_ident(validate_schema(schema))
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, schema)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {q}.schema_version ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = await _applied_versions(conn, schema)
        for m in load_migrations():
            if m.version in done:
                continue
            await conn.execute(render(m.sql, schema))
            await conn.execute(
                f"INSERT INTO {q}.schema_version (version, name) VALUES ($1, $2)", m.version, m.name
            )
            applied_now.append(m.version)
    return applied_now


async def migrate_dsn(dsn: str, schema: str = DEFAULT_SCHEMA) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, schema)
    finally:
        await conn.close()


async def pending_versions(conn: asyncpg.Connection, schema: str = DEFAULT_SCHEMA) -> tuple[int, list[int]]:
    """(the schema's current version, the migrations it lacks), read without writing anything."""
    done = await _applied_versions(conn, schema)
    return (max(done) if done else 0), [m.version for m in load_migrations() if m.version not in done]


async def check_schema(conn: asyncpg.Connection, schema: str = DEFAULT_SCHEMA) -> None:
    """Raise SchemaError naming the command to run when the schema is missing or behind."""
    current, missing = await pending_versions(conn, schema)
    if missing:
        flag = "" if schema == DEFAULT_SCHEMA else f" --schema {schema}"
        raise SchemaError(
            f"siopg: the database schema {schema!r} is at version {current}, this siopg needs "
            f"version {latest_version()} (missing {missing}). Run: "
            f"siopg migrate --database-url <your database URL>{flag}"
        )


def build_parser() -> argparse.ArgumentParser:
    """The arguments of `siopg migrate` (also read by the generated reference in docs/)."""
    parser = argparse.ArgumentParser(
        prog="siopg migrate",
        description="Create or upgrade siopg's schema in a PostgreSQL database (`siopg serve --database-url`"
                    " does it by itself at start; run this for apps that build their own PostgresAdapter).",
    )
    parser.add_argument("--database-url", metavar="URL", default=database_url_from_env(),
                        help=f"PostgreSQL URL, postgresql://user:password@host/db (env {DATABASE_ENV};"
                             " a plain DATABASE_URL is ignored)")
    parser.add_argument("--schema", default=DEFAULT_SCHEMA,
                        help=f"schema holding siopg's tables (default: {DEFAULT_SCHEMA})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`siopg migrate [--database-url URL] [--schema NAME]`: one line of output, 0 when done."""
    args = build_parser().parse_args(argv)
    notice = ignored_database_url_notice(args.database_url)
    if notice:
        print(f"siopg migrate: {notice}", file=sys.stderr)
    if not args.database_url:
        print(f"siopg migrate: no database given: pass --database-url URL or set {DATABASE_ENV}", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(_migrate_with_timeout(args.database_url, args.schema))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        print(f"siopg migrate: cannot migrate {redact(args.database_url)}: {reason}", file=sys.stderr)
        return 1
    if applied:
        print(f"siopg migrate: applied {', '.join(map(str, applied))} to schema {args.schema!r}")
    else:
        print(f"siopg migrate: schema {args.schema!r} is up to date (version {latest_version()})")
    return 0


async def _migrate_with_timeout(dsn: str, schema: str, timeout: float = 15.0) -> list[int]:
    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        return await migrate(conn, schema)
    finally:
        await conn.close()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
