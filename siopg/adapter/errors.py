"""Errors the adapter layer raises, defined here (below the server) and re-exported where users
know them: `siopg.AckTimeoutError` / `siopg.server.errors.AckTimeoutError`,
`siopg.adapter.postgres.EmitNotConfirmed` and `siopg.emitter.EmitNotConfirmed` are these classes.
"""

from __future__ import annotations

import uuid
from typing import Any


class AckTimeoutError(TimeoutError):
    """An acknowledgement did not arrive in time.

    `responses` holds the answers that did arrive (broadcast acks), so a caller can still use a
    partial result.
    """

    def __init__(self, message: str = "operation has timed out", responses: list[Any] | None = None) -> None:
        super().__init__(message)
        self.responses: list[Any] = responses if responses is not None else []


class RecoveryUnavailable(Exception):
    """`restore_session` could not reach its session store in time (e.g. PostgreSQL down).

    The session may exist, so the server must not hand out a fresh one: it closes the client's
    Engine.IO connection instead, and the client reconnects later with the same pid/offset.
    """


class EmitNotConfirmed(ConnectionError):
    """An emit could not be confirmed after its retries: its packet is in the log once, or not
    at all (never twice). `key` is the packet's batch key (`<schema>.packets.batch_key`)."""

    def __init__(self, message: str, key: uuid.UUID) -> None:
        super().__init__(message)
        self.key = key
