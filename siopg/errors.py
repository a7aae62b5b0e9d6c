"""The root of siopg's exceptions, and the errors more than one layer raises.

A bottom-layer module (imports nothing of siopg), so every layer can derive its errors from
:class:`SiopgError` and `except siopg.SiopgError` catches anything siopg raises on purpose.
Each error keeps its historical built-in base too (``ParseError`` is still a ``ValueError``,
``AckTimeoutError`` a ``TimeoutError``...), so existing ``except`` clauses keep working.

The tree (each class lives in, and is importable from, the module named):

* :class:`SiopgError`
    * ``siopg.errors``: :class:`AckTimeoutError` (also ``TimeoutError``; ``.responses``)
    * ``siopg.parser``: ``ParseError`` (also ``ValueError``): malformed Socket.IO input
    * ``siopg.engine.protocol``: ``PacketDecodeError`` (also ``ValueError``): malformed
      Engine.IO input
    * ``siopg.engine.errors``: ``EngineError`` (``.code``, ``.message``, ``.status``: the HTTP
      answer) and its subclasses ``UnknownTransport``, ``UnknownSessionId``,
      ``BadHandshakeMethod``, ``BadRequest``, ``Forbidden``, ``UnsupportedProtocolVersion``,
      ``PayloadTooLarge``; ``WsClosed`` (a binding's WebSocket is gone; ``.error``)
    * ``siopg.adapter.base``: ``RecoveryUnavailable``: the session store cannot be reached
    * ``siopg.adapter.postgres``: ``SchemaError``, ``PublishBufferFull``,
      ``PublishRowDropped``, ``SessionWriteError`` (also ``RuntimeError``)
    * ``siopg.emitter``: ``EmitNotConfirmed`` (also ``ConnectionError``; ``.key``)
    * ``siopg.server``: ``ConnectError`` (``.message``, ``.data``: what the client gets),
      ``TooManyNamespaces`` (``.name``)
    * ``siopg.runtime``: ``AppLoadError`` (``.ref``): an app reference cannot be resolved
    * ``siopg.supervisor``: ``DatabaseError``, ``HeadError`` (``.status``, ``.reason``)

Private control-flow exceptions (names starting with ``_``) never leave their module and are
not part of the tree; tests/unit/test_layers.py checks every public one is.
"""

from __future__ import annotations

from typing import Any


class SiopgError(Exception):
    """Base class of every exception siopg raises on purpose."""


class AckTimeoutError(TimeoutError, SiopgError):
    """An acknowledgement did not arrive in time.

    `responses` holds the answers that did arrive (broadcast acks), so a caller can still use a
    partial result. It lives here, not in the server, because the cluster adapter raises it
    too (for server-side emits across processes); `siopg.server.errors` re-exports it.
    """

    def __init__(self, message: str = "operation has timed out", responses: list[Any] | None = None) -> None:
        super().__init__(message)
        self.responses: list[Any] = responses if responses is not None else []


__all__ = ["AckTimeoutError", "SiopgError"]
