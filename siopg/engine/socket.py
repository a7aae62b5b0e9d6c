"""EngineSocket: the upper layer's handle on one Engine.IO connection.

It is also the session's driver: it turns the session's requests into loop callbacks (one
flush per tick, one timer per session), parks the polling GET, and writes to whichever
WebSocket writer the binding attached.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from .deadlines import Deadline, DeadlineQueue
from .message import EncodedPacket, OutgoingMessage
from .request import RequestInfo
from .session import FORCED_CLOSE, EngineSession, SessionConfig

if TYPE_CHECKING:
    from .connection import EngineConnection

log = logging.getLogger("siopg.engine")

# A WebSocket whose unsent bytes reach this is "not writable": volatile packets skip it.
WRITABLE_LIMIT = 16 * 1024


class WsWriter(Protocol):
    """A binding's outgoing side of one WebSocket."""

    def write_packets(self, packets: Sequence[EncodedPacket]) -> int: ...  # -> unsent bytes
    def buffer_size(self) -> int: ...
    @property
    def closing(self) -> bool: ...  # closed, or its connection is going away
    def close(self) -> None: ...


class FlushBatch:
    """The connections that queued packets this loop tick, flushed by ONE loop callback.

    One per EngineServer, handed to each of its connections. A broadcast dirties every
    recipient in the same tick; one callback for all of them (instead of one uvloop Handle
    per connection) costs a list append each.
    Each connection is flushed in the order it was first dirtied, so its own order holds.
    """

    __slots__ = ("delay", "dirty")

    def __init__(self, delay: float = 0.0) -> None:
        """`delay`: seconds the flush waits after the first connection was dirtied (write
        coalescing: frames queued meanwhile go out in the same write); 0 flushes in the next
        loop iteration."""
        self.dirty: list[EngineSocket] = []
        self.delay = delay

    def schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called by the first connection dirtied since the last flush."""
        if self.delay > 0:
            loop.call_later(self.delay, self.run)
        else:
            loop.call_soon(self.run)

    def run(self) -> None:
        batch = self.dirty
        self.dirty = []  # connections dirtied while flushing (close handlers...) go in the next tick
        for conn in batch:
            conn._flush_scheduled = False
            try:
                conn._session.flush()
            except Exception:  # one connection's failure must not strand the others
                log.exception("flushing engine connection %s failed", conn.sid)


def _noop_message(data: str | bytes) -> None:
    pass


def _noop_close(reason: str, description: str | None) -> None:
    pass


class EngineSocket:
    """One Engine.IO connection as the Socket.IO layer sees it (docs/architecture.md).

    `send(messages)` queues messages; everything queued in one loop tick goes out in one
    write. It is the session's own bound method (no hop through this object on the
    broadcast path, which calls it once per recipient).
    """

    __slots__ = (
        "_batch", "_deadlines", "_flush_scheduled", "_loop", "_on_closed", "_poll_alive", "_poll_future",
        "_post_deadline", "_session", "_timer", "_ws", "on_close", "on_message", "request",
        "send", "sid",
    )

    send: Callable[[Sequence[OutgoingMessage]], None]

    def __init__(
        self,
        sid: str,
        transport: str,
        request: RequestInfo,
        config: SessionConfig,
        loop: asyncio.AbstractEventLoop,
        batch: FlushBatch,
        on_closed: Callable[[EngineSocket], None],
        deadlines: DeadlineQueue | None = None,
    ) -> None:
        """`batch`: the flush batch this connection joins when it has packets queued;
        `deadlines`: the queue its timeouts go to (the owner's, shared by its connections);
        `on_closed(socket)`: the owner's hook, called once when the session closes (before
        `on_close`), e.g. to drop it from the session table."""
        self.sid = sid
        self.request = request
        self.on_message: Callable[[str | bytes], None] = _noop_message
        self.on_close: Callable[[str, str | None], None] = _noop_close
        self._on_closed = on_closed
        self._loop = loop
        self._flush_scheduled = False
        self._deadlines = deadlines if deadlines is not None else DeadlineQueue(loop)
        self._timer: Deadline | None = None
        # the parked GET: its answer, and whether its connection is still open
        self._poll_future: asyncio.Future[tuple[str, Sequence[EncodedPacket]]] | None = None
        self._poll_alive: Callable[[], bool] | None = None
        self._post_deadline: asyncio.Timeout | None = None  # the POST body being read
        self._ws: WsWriter | None = None
        self._batch = batch
        self._session = session = EngineSession(sid, transport, config, self, loop.time)
        self.send = session.send

    # ------------------------------------------------------------------ public API

    @property
    def transport(self) -> str:
        return self._session.transport

    @property
    def closed(self) -> bool:
        return not self._session.is_open

    def flush(self) -> None:
        """Write what is queued now instead of at the end of the loop tick.

        For a reply the client waits on (a namespace CONNECT): like socket.io, it leaves at
        once and what follows goes in a later write (or, over polling, the next GET).
        """
        self._session.flush()

    def close(self, reason: str = FORCED_CLOSE) -> None:
        """Close after flushing what is queued; on_close(reason) follows."""
        self._session.close(reason)

    @property
    def writable(self) -> bool:
        """Could a packet go out right now? (socket.io drops volatile packets otherwise.)

        WebSocket: open, not closing, and holding less than WRITABLE_LIMIT unsent bytes.
        Polling: a GET is parked, waiting for data.
        """
        session = self._session
        if not session._accepting:
            return False
        if session._ws_active:
            ws = self._ws
            return ws is not None and not ws.closing and ws.buffer_size() < WRITABLE_LIMIT
        return session.poll_waiting

    @property
    def buffered_bytes(self) -> int:
        ws = self._ws
        return self._session.buffered_bytes + (ws.buffer_size() if ws is not None else 0)

    def __repr__(self) -> str:
        return f"<EngineSocket {self.sid} {self.transport} {self._session.state.name}>"

    # ------------------------------------------------------------------ driver

    def request_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            batch = self._batch
            dirty = batch.dirty
            if not dirty:
                batch.schedule(self._loop)
            dirty.append(self)

    def set_deadline(self, when: float | None) -> None:
        timer = self._timer
        if timer is not None:
            self._deadlines.cancel(timer)
            self._timer = None
        if when is not None:
            self._timer = self._deadlines.add(when, self._session.on_deadline)

    def poll_alive(self) -> bool:
        check = self._poll_alive
        if check is None:
            return True
        try:
            return check()
        except Exception:  # a binding's check must not break the session; assume open
            log.exception("engine poll liveness check failed (sid %s)", self.sid)
            return True

    def answer_poll(self, body: str, packets: Sequence[EncodedPacket] = ()) -> None:
        fut = self._poll_future
        self._poll_future = None
        self._poll_alive = None
        if fut is not None and not fut.done():
            fut.set_result((body, packets))
        elif packets:  # no GET left to carry them: keep them for the next one
            self._session.requeue(packets)

    def ws_write(self, packets: Sequence[EncodedPacket]) -> int:
        ws = self._ws
        return ws.write_packets(packets) if ws is not None else 0

    def ws_close(self) -> None:
        ws = self._ws
        self._ws = None
        if ws is not None:
            ws.close()

    def deliver(self, data: str | bytes) -> None:
        try:
            self.on_message(data)
        except Exception:
            log.exception("engine on_message handler failed (sid %s)", self.sid)

    def session_closed(self, reason: str, description: str | None) -> None:
        self._on_closed(self)
        deadline = self._post_deadline
        if deadline is not None:  # a POST body still being read: end it now
            self._post_deadline = None
            if not deadline.expired():
                try:
                    deadline.reschedule(self._loop.time())
                except RuntimeError:  # the read just finished
                    pass
        try:
            self.on_close(reason, description)
        except Exception:
            log.exception("engine on_close handler failed (sid %s)", self.sid)


if TYPE_CHECKING:  # mypy proves that EngineSocket is what the layer above relies on
    _implements_connection: type[EngineConnection] = EngineSocket
