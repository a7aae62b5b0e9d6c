"""PostgreSQL cluster adapter: LISTEN/NOTIFY plus a packet table that is the CSR log."""

from siopg.adapter.postgres.adapter import PostgresAdapter, PostgresNamespaceAdapter
from siopg.adapter.postgres.migrations import SchemaError, check_schema, migrate
from siopg.adapter.postgres.publisher import PublishBufferFull, PublishRowDropped

from siopg.emitter import EmitNotConfirmed, Emitter  # noqa: E402  (after the adapter: it reuses its codec)

__all__ = [
    "EmitNotConfirmed",
    "Emitter",
    "PostgresAdapter",
    "PostgresNamespaceAdapter",
    "PublishBufferFull",
    "PublishRowDropped",
    "SchemaError",
    "check_schema",
    "migrate",
]
