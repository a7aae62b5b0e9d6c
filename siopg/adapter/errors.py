"""Errors the adapter layer raises, defined here (below the server) and re-exported where users
know them: `siopg.AckTimeoutError` / `siopg.server.errors.AckTimeoutError`,
`siopg.adapter.postgres.EmitNotConfirmed` and `siopg.emitter.EmitNotConfirmed` are these classes.
"""

from __future__ import annotations

import uuid

from siopg.errors import (
    AckTimeoutError as AckTimeoutError,  # re-exported: its home is siopg.errors
)
from siopg.errors import SiopgError


class RecoveryUnavailable(SiopgError):
    """`restore_session` could not reach its session store in time (e.g. PostgreSQL down).

    The session may exist, so the server must not hand out a fresh one: it closes the client's
    Engine.IO connection instead, and the client reconnects later with the same pid/offset.
    """


class EmitNotConfirmed(ConnectionError, SiopgError):
    """An emit could not be confirmed after its retries: its packet is in the log once, or not
    at all (never twice). `key` is the packet's batch key (`<schema>.packets.batch_key`)."""

    def __init__(self, message: str, key: uuid.UUID) -> None:
        super().__init__(message)
        self.key = key
