"""EngineConnection: what the Socket.IO layer may use of one Engine.IO connection.

:class:`~siopg.engine.socket.EngineSocket` implements it; so does the test double
``siopg.server.testing.FakeConnection``. The upper layer types its connections with this
Protocol, never with ``Any`` and never with the engine's concrete classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from .message import OutgoingMessage
from .request import RequestInfo


class EngineConnection(Protocol):
    """One Engine.IO connection, as the layer above sees it."""

    # The upper layer sets these two once, when the engine hands it the connection.
    on_message: Callable[[str | bytes], None]
    """Called with each incoming Engine.IO message (text or binary)."""
    on_close: Callable[[str, str | None], None]
    """Called once with (reason, description) when the connection is closed."""

    @property
    def sid(self) -> str:
        """The Engine.IO session id."""

    @property
    def request(self) -> RequestInfo:
        """The handshake request."""

    @property
    def transport(self) -> str:
        """The current transport: "polling" or "websocket"."""

    @property
    def writable(self) -> bool:
        """Could a packet go out right now? (Volatile packets are dropped otherwise.)"""

    @property
    def buffered_bytes(self) -> int:
        """Bytes queued for this connection and not yet sent."""

    def send(self, messages: Sequence[OutgoingMessage]) -> None:
        """Queue messages; what is queued in one loop tick goes out in one write."""

    def flush(self) -> None:
        """Write what is queued now instead of at the end of the loop tick."""

    def close(self, reason: str = ...) -> None:
        """Close after flushing what is queued; `on_close(reason, None)` follows."""
