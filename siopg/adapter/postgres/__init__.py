"""PostgreSQL cluster adapter: LISTEN/NOTIFY plus a packet table that is the CSR log.

The emitter (`siopg.Emitter`, `siopg.emitter.Emitter`) is a layer above and is not
re-exported here (it imports this package); its error `EmitNotConfirmed` lives in
`siopg.adapter.errors` and stays importable from here.
"""

from siopg.adapter.errors import EmitNotConfirmed
from siopg.adapter.postgres.adapter import PostgresAdapter, PostgresNamespaceAdapter
from siopg.adapter.postgres.migrations import SchemaError, check_schema, migrate
from siopg.adapter.postgres.publisher import PublishBufferFull, PublishRowDropped

__all__ = [
    "EmitNotConfirmed",
    "PostgresAdapter",
    "PostgresNamespaceAdapter",
    "PublishBufferFull",
    "PublishRowDropped",
    "SchemaError",
    "check_schema",
    "migrate",
]
