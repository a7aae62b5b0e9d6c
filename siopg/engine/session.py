"""One Engine.IO connection as a sans-I/O state machine.

The session decides everything the protocol says: what a polling GET or POST is answered,
the probe / upgrade / noop sequence, ping and pong bookkeeping, when and why to close. It
never touches a socket or a timer: it asks its *driver* (the binding) to do I/O, and exposes
one absolute ``deadline`` (in the driver's clock) that the driver turns into one timer and
reports back through :meth:`EngineSession.on_deadline`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from .._log import clip
from .errors import BadRequest, PayloadTooLarge
from .message import CLOSE, NOOP, PING, PONG_PROBE, EncodedPacket
from .protocol import (
    SEPARATOR,
    EnginePacket,
    EnginePacketType,
    PacketDecodeError,
    decode_packet,
)

log = logging.getLogger("siopg.engine")

# Close reasons, exactly as engine.io names them.
TRANSPORT_CLOSE = "transport close"
TRANSPORT_ERROR = "transport error"
PING_TIMEOUT = "ping timeout"
FORCED_CLOSE = "forced close"
PARSE_ERROR = "parse error"
SERVER_SHUTTING_DOWN = "server shutting down"

_EPSILON = 0.001  # timers may fire this much early; treat such deadlines as due


class State(IntEnum):
    OPENING = 0
    OPEN = 1
    UPGRADING = 2  # open, with a WebSocket probing to replace the polling transport
    CLOSING = 3
    CLOSED = 4


class SessionDriver(Protocol):
    """The I/O a session asks of its binding. No protocol decision is made there."""

    def request_flush(self) -> None:
        """Call :meth:`EngineSession.flush` soon (once per loop tick)."""

    def set_deadline(self, when: float | None) -> None:
        """(Re)arm the session's single timer at `when` (None: disarm)."""

    def poll_alive(self) -> bool:
        """Is the parked polling GET's connection still open (could an answer arrive)?"""

    def answer_poll(self, body: str, packets: Sequence[EncodedPacket] = ()) -> None:
        """Answer the parked polling GET with a 200 and this payload (made of `packets`,
        which go back through :meth:`EngineSession.requeue` if the answer cannot be written)."""

    def ws_write(self, packets: Sequence[EncodedPacket]) -> int:
        """Write these packets' frames on the WebSocket (active or probing), in one write;
        return the bytes the connection now holds unsent (for the max_buffer_size check)."""

    def ws_close(self) -> None:
        """Close the WebSocket (active or probing) and forget it."""

    def deliver(self, data: str | bytes) -> None:
        """One incoming Engine.IO message for the upper layer."""

    def session_closed(self, reason: str, description: str | None) -> None:
        """The session is closed (called exactly once)."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    upgrade_timeout: float = 10.0
    max_http_buffer_size: int = 1_000_000
    max_buffer_size: int = 8 * 1024 * 1024
    upgrades: tuple[str, ...] = ("websocket",)
    close_timeout: float = 30.0  # a polling close waits this long for the next GET


class EngineSession:
    """Engine.IO protocol 4 state of one connection (see module docstring)."""

    __slots__ = (
        "_accepting", "_close_deadline", "_deadline", "_ping_at", "_pong_deadline", "_state",
        "_transport", "_upgrade_deadline", "_ws_active", "clock", "close_reason", "config",
        "driver", "poll_waiting", "post_active", "probed", "queue", "queued_bytes", "sid",
        "upgraded",
    )

    def __init__(
        self,
        sid: str,
        transport: str,
        config: SessionConfig,
        driver: SessionDriver,
        clock: Callable[[], float],
    ) -> None:
        self.sid = sid
        self.transport = transport
        self.config = config
        self.driver = driver
        self.clock = clock
        self.state = State.OPENING
        self.upgraded = False
        self.probed = False
        self.queue: list[EncodedPacket] = []
        self.queued_bytes = 0
        self.poll_waiting = False
        self.post_active = False
        self.close_reason: str | None = None
        self._ping_at: float | None = None
        self._pong_deadline: float | None = None
        self._upgrade_deadline: float | None = None
        self._close_deadline: float | None = None
        self._deadline: float | None = None

    # Two flags mirror `state` and `transport` so the hot path (send) tests plain bools.

    @property
    def state(self) -> State:
        return self._state

    @state.setter
    def state(self, value: State) -> None:
        self._state = value
        self._accepting = value is State.OPEN or value is State.UPGRADING

    @property
    def transport(self) -> str:
        return self._transport

    @transport.setter
    def transport(self, value: str) -> None:
        self._transport = value
        self._ws_active = value == "websocket"

    # ------------------------------------------------------------------ opening

    def open(self) -> EncodedPacket:
        """Open the session: returns the open packet (the handshake answer) and arms pings."""
        if self.state is not State.OPENING:
            raise RuntimeError("session already opened")
        self.state = State.OPEN
        cfg = self.config
        upgrades = list(cfg.upgrades) if self.transport == "polling" else []
        handshake = {
            "sid": self.sid,
            "upgrades": upgrades,
            "pingInterval": round(cfg.ping_interval * 1000),
            "pingTimeout": round(cfg.ping_timeout * 1000),
            "maxPayload": cfg.max_http_buffer_size,
        }
        self._ping_at = self.clock() + cfg.ping_interval
        self._rearm()
        return EncodedPacket(EnginePacketType.OPEN, json.dumps(handshake, separators=(",", ":")))

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN or self.state is State.UPGRADING

    @property
    def upgrading(self) -> bool:
        return self.state is State.UPGRADING

    # ------------------------------------------------------------------ outbound

    def send(self, packets: Sequence[EncodedPacket]) -> None:
        """Queue packets; the driver flushes them once per loop tick. Dropped once closing.

        Hot path: over WebSocket this only appends (the byte check happens once per flush);
        over polling the queue waits for the client's next GET, so its bytes are counted.
        """
        if not self._accepting:
            return
        queue = self.queue
        if not queue:
            self.driver.request_flush()
        queue.extend(packets)
        if not self._ws_active:
            n = self.queued_bytes
            for p in packets:
                n += len(p.polling)
            self.queued_bytes = n
            if n > self.config.max_buffer_size:
                self._overflow()

    def flush(self) -> None:
        """Hand queued packets to the transport if it can take them now."""
        if not self.queue or self._state is State.CLOSED:
            return
        if self._ws_active:
            packets = self.queue
            self.queue = []
            self.queued_bytes = 0
            if self.driver.ws_write(packets) > self.config.max_buffer_size:
                self._overflow()
        elif self.poll_waiting and self._parked():
            self._answer()

    @property
    def buffered_bytes(self) -> int:
        """Bytes queued here (not yet handed to the transport)."""
        if self.transport == "websocket":
            return sum(p.size for p in self.queue)
        return self.queued_bytes

    def _take_packets(self, *extra: EncodedPacket) -> tuple[str, list[EncodedPacket]]:
        """Empty the queue into one polling payload: (body, the packets in it)."""
        packets = self.queue
        self.queue = []
        self.queued_bytes = 0
        if extra:
            packets = packets + list(extra)
        if len(packets) == 1:
            return packets[0].polling, packets
        return SEPARATOR.join(p.polling for p in packets), packets

    def _answer(self, *extra: EncodedPacket) -> None:
        """Answer the parked GET with the queue (plus `extra`)."""
        self.poll_waiting = False
        self.driver.answer_poll(*self._take_packets(*extra))

    def _parked(self) -> bool:
        """Is a GET parked whose connection is still open? One whose connection went away is
        released here with a noop (nothing it is given could arrive), so the queue stays for
        the next GET and that GET is no overlap."""
        if not self.poll_waiting:
            return False
        if self.driver.poll_alive():
            return True
        self.poll_waiting = False
        self.driver.answer_poll(NOOP.polling)
        return False

    def requeue(self, packets: Sequence[EncodedPacket]) -> None:
        """A poll answer was not written (its connection was gone): its packets go back to
        the front of the queue, for the next GET (or the WebSocket after an upgrade)."""
        if self.state is State.CLOSED:
            return
        packets = [p for p in packets if p is not NOOP and p is not CLOSE]
        if not packets:
            return
        if not self.queue:
            self.driver.request_flush()
        self.queue[:0] = packets
        if not self._ws_active:
            self.queued_bytes += sum(len(p.polling) for p in packets)

    def _overflow(self) -> None:
        self.queue = []
        self.queued_bytes = 0
        self._finish(TRANSPORT_ERROR, "send buffer overflow")

    # ------------------------------------------------------------------ polling

    def on_poll(self) -> str | None:
        """Like :meth:`poll`, returning only the body."""
        answer = self.poll()
        return None if answer is None else answer[0]

    def poll(self) -> tuple[str, list[EncodedPacket]] | None:
        """A polling GET arrived. Returns (body, its packets) to answer now, or None: parked,
        answered later through ``driver.answer_poll``. Raises BadRequest (and closes) on
        overlap. If the answer cannot be written, give its packets to :meth:`requeue`."""
        if self.state is State.CLOSED:
            raise BadRequest(context="session closed")
        if self.poll_waiting and self._parked():
            self._finish(TRANSPORT_ERROR, "overlap from client")
            raise BadRequest(context="overlapping GET")
        if self.state is State.CLOSING:
            answer = self._take_packets(CLOSE)
            self._finish(self.close_reason or FORCED_CLOSE, None)
            return answer
        if self.queue:
            return self._take_packets()
        if self.state is State.UPGRADING and self.probed:
            return NOOP.polling, []  # let the client pause polling and finish the upgrade
        self.poll_waiting = True
        return None

    def on_poll_aborted(self) -> None:
        """The parked GET's connection went away before it was answered. Nothing was taken
        from the queue, so the session goes on: the next GET gets what is queued (a client
        that is really gone misses its pings and times out)."""
        self.poll_waiting = False

    def on_poll_interrupted(self) -> None:
        """A poll answer's bytes went out but its connection broke before the write finished:
        the client may hold some, all or none of those packets, so they are neither requeued
        (a second copy would be a duplicate) nor assumed delivered. The session ends, as
        engine.io's does ("poll connection closed prematurely"); a client with connection
        state recovery then gets exactly what it missed, by offset, when it reconnects."""
        self.poll_waiting = False
        if self.state is not State.CLOSED:
            self._finish(TRANSPORT_ERROR, "poll connection closed prematurely")

    def on_post_aborted(self, description: str) -> None:
        """A POST's body could not be read (its connection went away, or it took too long):
        what it carried is lost, so the session ends, as engine.io does."""
        self.post_active = False
        if self.is_open:
            self._finish(TRANSPORT_ERROR, description)

    def begin_post(self) -> None:
        """A polling POST starts (its body is read by the driver). Raises on overlap."""
        if not self.is_open:
            raise BadRequest(context="session closed")
        if self.post_active:
            self._finish(TRANSPORT_ERROR, "data request overlap from client")
            raise BadRequest(context="overlapping POST")
        self.post_active = True

    def on_post(self, body: bytes | None, content_type: str | None = None) -> str:
        """The POST body was read (None: it exceeded max_http_buffer_size). Returns the
        200 answer; raises an EngineError (the session is then closed)."""
        self.post_active = False
        if not self.is_open:
            raise BadRequest(context="session closed")
        if body is None or len(body) > self.config.max_http_buffer_size:
            self._finish(TRANSPORT_ERROR, "payload too large")
            raise PayloadTooLarge()
        if content_type is not None and content_type.split(";")[0].strip().lower() == (
            "application/octet-stream"
        ):
            self._finish(TRANSPORT_ERROR, "invalid content")
            raise BadRequest(context="binary body in protocol 4")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            self._finish(PARSE_ERROR, None)
            raise BadRequest(context="payload is not UTF-8") from None
        if not text:
            self._finish(PARSE_ERROR, None)
            raise BadRequest(context="empty payload")
        for record in text.split(SEPARATOR):
            try:
                packet = decode_packet(record)
            except PacketDecodeError as exc:
                self._finish(PARSE_ERROR, None)
                raise BadRequest(context=str(exc)) from None
            if packet.type is EnginePacketType.CLOSE:
                self._finish(TRANSPORT_CLOSE, None, poll_answer=NOOP)
                break
            self._on_packet(packet)
            if not self.is_open:
                break
        return "ok"

    # ------------------------------------------------------------------ websocket

    def start_upgrade(self) -> bool:
        """A WebSocket with this sid arrived. False: refuse it (the driver closes it)."""
        if (
            self.state is not State.OPEN
            or self.transport != "polling"
            or self.upgraded
            or "websocket" not in self.config.upgrades
        ):
            return False
        self.state = State.UPGRADING
        self.probed = False
        self._upgrade_deadline = self.clock() + self.config.upgrade_timeout
        self._rearm()
        return True

    def on_ws_message(self, raw: str | bytes) -> None:
        """A frame arrived on the session's WebSocket (the active one, or the probe)."""
        state = self.state
        if state is State.UPGRADING:
            self._on_upgrade_message(raw)
            return
        if self.transport != "websocket" or (state is not State.OPEN and state is not State.CLOSING):
            return
        try:
            packet = decode_packet(raw)
        except PacketDecodeError:
            self._finish(PARSE_ERROR, None)
            return
        if packet.type is EnginePacketType.MESSAGE:
            if state is State.OPEN:
                self.driver.deliver(packet.data)  # type: ignore[arg-type]
        elif packet.type is EnginePacketType.CLOSE:
            self._finish(TRANSPORT_CLOSE, None)
        else:
            self._on_packet(packet)

    def on_ws_closed(self, error: str | None = None) -> None:
        """The session's WebSocket closed (error: why, if it failed)."""
        if self.state is State.UPGRADING:
            self._abort_upgrade(close_ws=False)
        elif self.transport == "websocket":
            if error is None:
                self._finish(TRANSPORT_CLOSE, None)
            else:
                self._finish(TRANSPORT_ERROR, error)

    def _on_upgrade_message(self, raw: str | bytes) -> None:
        try:
            packet = decode_packet(raw)
        except PacketDecodeError:
            self._abort_upgrade()
            return
        if packet.type is EnginePacketType.PING and packet.data == "probe":
            self.driver.ws_write([PONG_PROBE])
            self.probed = True
            if self._parked():  # end the pending GET so the client can pause polling
                self._answer(NOOP)
        elif packet.type is EnginePacketType.UPGRADE:
            self._complete_upgrade()
        else:
            self._abort_upgrade()

    def _complete_upgrade(self) -> None:
        self.state = State.OPEN
        self.upgraded = True
        self.transport = "websocket"
        self._upgrade_deadline = None
        if self._parked():  # the queue goes out on the WebSocket below
            self.poll_waiting = False
            self.driver.answer_poll(NOOP.polling)
        self._rearm()
        self.flush()
        if self.close_reason is not None and self.is_open:
            self.close(self.close_reason)

    def _abort_upgrade(self, close_ws: bool = True) -> None:
        self.state = State.OPEN
        self.probed = False
        self._upgrade_deadline = None
        self._rearm()
        if close_ws:
            self.driver.ws_close()

    # ------------------------------------------------------------------ packets

    def _on_packet(self, packet: EnginePacket) -> None:
        ptype = packet.type
        if ptype is EnginePacketType.MESSAGE:
            self.driver.deliver(packet.data)  # type: ignore[arg-type]
        elif ptype is EnginePacketType.PONG:
            self._pong_deadline = None
            self._ping_at = self.clock() + self.config.ping_interval
            self._rearm()
        elif ptype is EnginePacketType.PING:
            self._finish(TRANSPORT_ERROR, "invalid heartbeat direction")
        # open, upgrade and noop from the client on the main transport are ignored

    # ------------------------------------------------------------------ timers

    @property
    def deadline(self) -> float | None:
        return self._deadline

    def _rearm(self) -> None:
        deadline = None
        for d in (self._ping_at, self._pong_deadline, self._upgrade_deadline, self._close_deadline):
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        if deadline != self._deadline:
            self._deadline = deadline
            self.driver.set_deadline(deadline)

    def on_deadline(self) -> None:
        """The driver's timer fired: run whatever is due."""
        self._deadline = None  # the armed timer is spent
        if self.state is State.CLOSED:
            return
        real_now = self.clock()
        now = real_now + _EPSILON
        if self._close_deadline is not None and now >= self._close_deadline:
            self._finish(self.close_reason or FORCED_CLOSE, None)
            return
        if self._pong_deadline is not None and now >= self._pong_deadline:
            self._finish(PING_TIMEOUT, None)
            return
        if self._upgrade_deadline is not None and now >= self._upgrade_deadline:
            self._abort_upgrade()
        if self._ping_at is not None and now >= self._ping_at:
            # Count the pong timeout from when the ping was due, so a late timer does not
            # stretch the session's life; but give the client at least half of it.
            timeout = self.config.ping_timeout
            self._pong_deadline = max(self._ping_at + timeout, real_now + timeout / 2)
            self._ping_at = None
            self.send([PING])
        if self._state is not State.CLOSED:  # the calls above may have closed the session
            self._rearm()

    # ------------------------------------------------------------------ closing

    def close(self, reason: str = FORCED_CLOSE, discard: bool = False) -> None:
        """Server-side close: flush what is queued, then close the transport.

        Over polling without a parked GET, the close packet waits for the next GET (up to
        close_timeout) unless `discard` (server shutdown) closes right away.
        """
        if self.state is State.UPGRADING:
            self.close_reason = reason
            self._abort_upgrade()
        if self.state is not State.OPEN:
            return
        self.close_reason = reason
        if self.transport == "websocket":
            self.flush()
            self._finish(reason, None)
        elif self._parked():
            self._answer(CLOSE)
            self._finish(reason, None)
        elif discard:
            self._finish(reason, None)
        else:
            self.state = State.CLOSING
            self._ping_at = self._pong_deadline = None
            self._close_deadline = self.clock() + self.config.close_timeout
            self._rearm()

    def _finish(
        self, reason: str, description: str | None, poll_answer: EncodedPacket = CLOSE
    ) -> None:
        """The session is over (engine.io's Socket.onClose): release everything, once."""
        if self.state is State.CLOSED:
            return
        upgrading = self.state is State.UPGRADING
        self.state = State.CLOSED
        self.queue = []
        self.queued_bytes = 0
        self._ping_at = self._pong_deadline = self._upgrade_deadline = self._close_deadline = None
        self._rearm()
        if upgrading or self.transport == "websocket":
            self.driver.ws_close()
        if self.poll_waiting:
            self.poll_waiting = False
            self.driver.answer_poll(poll_answer.polling)
        log.debug("engine session %s closed: %s (%s)", self.sid, reason, clip(description))
        self.driver.session_closed(reason, description)
