"""Test doubles: drive a Server without HTTP, through fake Engine.IO connections.

`FakeConnection` implements the EngineSocket interface (records what is sent, reports close);
`FakeClient` speaks Socket.IO over it with the server's own parser. Useful for unit tests of
handlers, middlewares and rooms: no ports, no timing beyond the event loop.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import Any

from siopg.engine.request import RequestInfo
from siopg.parser import Packet, PacketType


class FakeConnection:
    """An EngineSocket stand-in: `sent` holds every OutgoingMessage list passed to send()."""

    def __init__(self, headers: dict[str, str] | None = None, query: dict[str, str] | None = None) -> None:
        self.sid = secrets.token_urlsafe(15)
        self.transport = "websocket"
        self.request = RequestInfo(
            headers=headers or {"host": "localhost"},
            query=query or {"EIO": "4", "transport": "websocket"},
            remote_address="127.0.0.1",
            url="/socket.io/?EIO=4&transport=websocket",
            secure=False,
            issued=int(time.time() * 1000),
        )
        self.on_message: Any = lambda data: None
        self.on_close: Any = lambda reason, description=None: None
        self.sent: list[Sequence[Any]] = []
        self.closed_with: str | None = None
        self.writable = True  # set False to see volatile packets dropped

    def send(self, messages: Sequence[Any]) -> None:
        if self.closed_with is None:
            self.sent.append(messages)

    def flush(self) -> None:
        """Nothing is buffered here: send() already recorded the messages."""

    def close(self, reason: str = "forced close") -> None:
        if self.closed_with is None:
            self.closed_with = reason
            asyncio.get_running_loop().call_soon(self.on_close, reason, None)

    def drop(self, reason: str = "transport close") -> None:
        """The network went away: the engine reports `reason` without a close handshake."""
        if self.closed_with is None:
            self.closed_with = reason
            self.on_close(reason, None)

    @property
    def buffered_bytes(self) -> int:
        return 0


class FakeClient:
    """A Socket.IO client over a FakeConnection, using the server's parser both ways."""

    def __init__(self, server: Any, headers: dict[str, str] | None = None) -> None:
        self.server = server
        self.conn = FakeConnection(headers)
        self._decoder = server._parser.new_decoder()
        self._seen = 0
        self.packets: list[Packet] = []
        server._on_engine_connection(self.conn)

    def send(self, packet: Packet) -> None:
        for part in self.server._parser.encoder.encode(packet):
            self.conn.on_message(part)

    def connect(self, nsp: str = "/", auth: dict[str, Any] | None = None) -> None:
        self.send(Packet(PacketType.CONNECT, nsp, auth, None))

    def emit(self, event: str, *args: Any, nsp: str = "/", ack_id: int | None = None) -> None:
        self.send(Packet(PacketType.EVENT, nsp, [event, *args], ack_id))

    def ack(self, ack_id: int, *args: Any, nsp: str = "/") -> None:
        self.send(Packet(PacketType.ACK, nsp, list(args), ack_id))

    def received(self) -> list[Packet]:
        """Every packet the server sent so far (decoded once, in order)."""
        for messages in self.conn.sent[self._seen :]:
            for message in messages:
                packet = self._decoder.add(message.data)
                if packet is not None:
                    self.packets.append(packet)
        self._seen = len(self.conn.sent)
        return self.packets

    def events(self, name: str | None = None, nsp: str = "/") -> list[list[Any]]:
        return [
            p.data
            for p in self.received()
            if p.type == PacketType.EVENT and p.nsp == nsp and (name is None or p.data[0] == name)
        ]

    async def wait_for(self, predicate: Any, timeout: float = 2.0) -> Packet:
        """The first received packet matching `predicate(packet)`, waiting if needed."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for packet in self.received():
                if predicate(packet):
                    return packet
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no matching packet; got {self.packets!r}")
            await asyncio.sleep(0.001)

    async def connected(self, nsp: str = "/", auth: dict[str, Any] | None = None) -> dict[str, Any]:
        """CONNECT and wait for the reply's data ({"sid"[, "pid"]})."""
        self.connect(nsp, auth)
        packet = await self.wait_for(
            lambda p: p.nsp == nsp and p.type in (PacketType.CONNECT, PacketType.CONNECT_ERROR)
        )
        if packet.type == PacketType.CONNECT_ERROR:
            raise AssertionError(f"connect refused: {packet.data!r}")
        return packet.data
