"""Client: one per Engine.IO connection; decodes packets and routes them to namespace sockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from siopg._log import clip
from siopg.adapter.errors import LIMIT
from siopg.engine import EngineConnection
from siopg.parser import Packet, PacketType, ParseError
from siopg.server.errors import TooManyNamespaces

if TYPE_CHECKING:  # pragma: no cover
    from siopg.server.server import Server
    from siopg.server.socket import Socket

logger = logging.getLogger("siopg.server")


class Client:
    """Binds an EngineSocket to its namespace sockets and to a decoder of the server's parser."""

    __slots__ = ("_connect_timer", "_connecting", "closed", "conn", "decoder", "id", "nsps", "server", "sockets")

    def __init__(self, server: Server, conn: EngineConnection) -> None:
        self.server = server
        self.conn = conn
        self.id: str = conn.sid
        self.decoder = server._parser.new_decoder()
        self.sockets: dict[str, Socket] = {}
        self.nsps: dict[str, Socket] = {}
        self._connecting: set[str] | None = None  # namespaces whose CONNECT is being handled
        self.closed = False
        conn.on_message = self._on_message
        conn.on_close = self._on_close
        self._connect_timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            server.connect_timeout, self._on_connect_timeout
        )

    # incoming ----------------------------------------------------------------------------
    def _on_message(self, data: str | bytes) -> None:
        try:
            packet = self.decoder.add(data)
        except ParseError as exc:
            logger.debug("parse error from %s: %s", self.id, clip(str(exc)))
            self._close("parse error")
            return
        except Exception:  # a decoder bug must cost this connection only, never the server
            logger.exception("decoder failed on a message from %s", self.id)
            self._close("parse error")
            return
        if packet is not None:
            try:
                self._route(packet)
            except Exception:
                logger.exception("handling a packet from %s failed", self.id)

    def _route(self, packet: Packet) -> None:
        nsp = packet.nsp
        socket = self.nsps.get(nsp)
        ptype = packet.type
        if socket is not None:
            if ptype == PacketType.CONNECT or ptype == PacketType.CONNECT_ERROR:
                self._close("parse error")  # invalid state: already connected there
            else:
                socket._on_packet(packet)
            return
        if ptype == PacketType.CONNECT:
            if not self.server.valid_namespace_name(nsp):
                # checked before any matcher runs or any child namespace is made
                self.server.metrics.invalid_names += 1
                self._packet(Packet(PacketType.CONNECT_ERROR, nsp, {"message": "Invalid namespace"}, None))
                return
            connecting = self._connecting
            if connecting is None:  # made on demand: most connections are idle afterwards
                connecting = self._connecting = set()
            elif nsp in connecting:
                return  # a duplicate CONNECT while the first one is being handled
            if len(self.nsps) + len(connecting) >= self.server.max_namespaces_per_connection:
                self.server.metrics.connection_namespaces_refused += 1
                if isinstance(packet.data, dict):
                    self._recovery_refused_by_limit(packet.data.get("pid"))
                message = {"message": "Too many namespaces for this connection"}
                self._packet(Packet(PacketType.CONNECT_ERROR, nsp, message, None))
                return
            auth = packet.data if isinstance(packet.data, dict) else {}
            pid = offset = None
            if self.server.recovery is not None:
                # recovery credentials: never kept in handshake.auth, which leaves the process
                # (fetch_sockets details); the pid is the session's secret
                pid = auth.pop("pid", None)
                offset = auth.pop("offset", None)
            connecting.add(nsp)
            self.server._tasks.spawn(self._connect(nsp, auth, pid, offset), f"connect {clip(nsp)}")
        elif ptype == PacketType.CONNECT_ERROR:
            self._close("parse error")
        # EVENT/ACK/DISCONNECT for a namespace this client is not in (for example, one the
        # server just left it from): drop them; the client will learn from our DISCONNECT.

    async def _connect(self, name: str, auth: dict[str, Any], pid: Any = None, offset: Any = None) -> None:
        try:
            try:
                nsp = await self.server._namespace_for(name, auth)
            except TooManyNamespaces:
                self._recovery_refused_by_limit(pid)
                if not self.closed:
                    message = {"message": "Too many namespaces: the server's limit of dynamic namespaces is reached"}
                    self._packet(Packet(PacketType.CONNECT_ERROR, name, message, None))
                return
            if self.closed:
                return
            if nsp is None:
                self._packet(Packet(PacketType.CONNECT_ERROR, name, {"message": "Invalid namespace"}, None))
                return
            await nsp._add(self, auth, pid, offset)
        finally:
            connecting = self._connecting
            if connecting is not None:
                connecting.discard(name)
                if not connecting:
                    self._connecting = None

    def _recovery_refused_by_limit(self, pid: Any) -> None:
        """A CONNECT a limit refused: if it asked to recover a session, count that failure."""
        if self.server.recovery is not None and isinstance(pid, str):
            metrics = self.server.metrics
            metrics.recoveries_attempted += 1
            metrics.recovery_failed(LIMIT)

    def _on_connect_timeout(self) -> None:
        self._connect_timer = None
        if not self.nsps and not self.closed:
            logger.debug("client %s joined no namespace in time: closing", self.id)
            self._close("forced server close")

    # bookkeeping -------------------------------------------------------------------------
    def _add_socket(self, socket: Socket) -> None:
        self.sockets[socket.id] = socket
        self.nsps[socket.nsp.name] = socket
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None

    def _remove(self, socket: Socket) -> None:
        if self.sockets.get(socket.id) is socket:
            del self.sockets[socket.id]
        if self.nsps.get(socket.nsp.name) is socket:
            del self.nsps[socket.nsp.name]

    # outgoing ----------------------------------------------------------------------------
    def _packet(self, packet: Packet, compress: bool | None = None) -> None:
        """Encode and queue one packet for this client only (`compress=False`: see emit)."""
        if self.closed:
            return
        self.conn.send(self.server._messages(packet, compress))
        self.server.metrics.packets_out += 1

    def _flush(self) -> None:
        """Write this connection's queued messages now (see EngineSocket.flush)."""
        if not self.closed:
            flush = getattr(self.conn, "flush", None)
            if flush is not None:
                flush()

    def _send_packets(self, packets: Iterable[Packet]) -> None:
        if self.closed:
            return
        to_messages = self.server._messages
        messages = [message for packet in packets for message in to_messages(packet)]
        if messages:
            self.conn.send(messages)

    # closing -----------------------------------------------------------------------------
    def _disconnect(self) -> None:
        """Disconnect every namespace socket, then close the connection (socket.disconnect(True))."""
        for socket in list(self.sockets.values()):
            socket.disconnect()
        self._close("forced server close")

    def _close(self, reason: str) -> None:
        """Close the engine connection ourselves; sockets see `reason`."""
        if self.closed:
            return
        self._on_close(reason)
        try:
            self.conn.close("forced close" if reason == "forced server close" else reason)
        except Exception:
            logger.exception("closing engine connection %s failed", self.id)

    def _on_close(self, reason: str, description: Any = None) -> None:
        """The engine connection is gone (called once by the engine; ignored after _close)."""
        if self.closed:
            return
        self.closed = True
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        for socket in list(self.sockets.values()):
            socket._on_close(reason, description)
        self.sockets.clear()
        self.nsps.clear()
        try:
            self.decoder.reset()
        except Exception:  # noqa: BLE001  # pragma: no cover - a user parser's decoder without state to drop
            pass
        self.server._client_closed(self)
