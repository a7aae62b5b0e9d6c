"""Errors the adapter layer raises, defined here (below the server) and re-exported where users
know them: `siopg.AckTimeoutError` / `siopg.server.errors.AckTimeoutError`,
`siopg.adapter.postgres.EmitNotConfirmed` and `siopg.emitter.EmitNotConfirmed` are these classes.
"""

from __future__ import annotations

import uuid
from typing import Any

from siopg._log import no_session
from siopg.errors import (
    AckTimeoutError as AckTimeoutError,  # re-exported: its home is siopg.errors
)
from siopg.errors import SiopgError

# Why a recovery failed: `socket.recovery_failure` and the `recovery_failed_<cause>` counters.
UNKNOWN_SESSION = "unknown_session"  # no such session (never existed, consumed, or cleaned up)
EXPIRED = "expired"                  # the session existed but its window passed
OFFSET_PRUNED = "offset_pruned"      # packets after the client's offset are gone from the log
OFFSET_INVALID = "offset_invalid"    # an offset never handed out here: forged, garbled, another namespace's
LIMIT = "limit"                      # the CONNECT was refused by a limit (namespaces per connection, dynamic ones)
UNAVAILABLE = "unavailable"          # the session store could not be reached (RecoveryUnavailable)
ERROR = "error"                      # the adapter failed unexpectedly (a bug: see the log)
RECOVERY_CAUSES = (UNKNOWN_SESSION, EXPIRED, OFFSET_PRUNED, OFFSET_INVALID, LIMIT, UNAVAILABLE, ERROR)


class RecoveryUnavailable(SiopgError):
    """`restore_session` could not reach its session store in time (e.g. PostgreSQL down).

    The session may exist, so the server must not hand out a fresh one: it closes the client's
    Engine.IO connection instead, and the client reconnects later with the same pid/offset.
    """

    cause = UNAVAILABLE


class RecoveryRefused(SiopgError):
    """`restore_session` has no session to give back, and says why: `cause` is one of
    RECOVERY_CAUSES. The client gets a fresh session (`socket.recovery_failure == cause`).

    An adapter may return None instead (counted as UNKNOWN_SESSION)."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


def refuse(pid: Any, cause: str, reason: str, *args: Any) -> RecoveryRefused:
    """Log why `pid` gets no session (see siopg._log.no_session) and return the error to raise."""
    no_session(pid, reason, *args)
    return RecoveryRefused(cause, reason % args if args else reason)


class EmitNotConfirmed(ConnectionError, SiopgError):
    """An emit could not be confirmed after its retries: its packet is in the log once, or not
    at all (never twice). `key` is the packet's batch key (`<schema>.packets.batch_key`)."""

    def __init__(self, message: str, key: uuid.UUID) -> None:
        super().__init__(message)
        self.key = key
