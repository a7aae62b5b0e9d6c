"""Encoded outgoing packets, shared by every recipient of a broadcast.

An :class:`OutgoingMessage` caches its WebSocket frame (unmasked, as a server sends it) and
its long-polling encoding the first time a transport asks, so a broadcast to many clients
frames once and every WebSocket connection gets the very same bytes.
"""

from __future__ import annotations

import base64
import struct

from .protocol import EnginePacketType

OP_TEXT = 0x1
OP_BINARY = 0x2

_pack_h = struct.Struct("!BB").pack
_pack_h16 = struct.Struct("!BBH").pack
_pack_h64 = struct.Struct("!BBQ").pack


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """Serialize one final, unmasked, uncompressed WebSocket frame (RFC 6455 section 5.2)."""
    first = 0x80 | opcode
    n = len(payload)
    if n < 126:
        return _pack_h(first, n) + payload
    if n < 0x10000:
        return _pack_h16(first, 126, n) + payload
    return _pack_h64(first, 127, n) + payload


class EncodedPacket:
    """One Engine.IO packet with lazily cached encodings for both transports."""

    __slots__ = ("_frame", "_text", "data", "type")

    # With per-message deflate negotiated, is this packet sent compressed? A class attribute,
    # so the common case costs no memory; UncompressedMessage says no (socket.io's
    # `compress(false)`). Without per-message deflate nothing is ever compressed.
    compress = True

    def __init__(self, ptype: EnginePacketType, data: str | bytes | None = None) -> None:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        self.type = ptype
        self.data = data
        self._frame: bytes | None = None
        self._text: str | None = None

    @property
    def binary(self) -> bool:
        return isinstance(self.data, bytes)

    def ws_payload(self) -> str | bytes:
        """The frame's payload: raw bytes for binary, else the type digit + text."""
        data = self.data
        if isinstance(data, bytes):
            return data
        return str(int(self.type)) + (data or "")

    @property
    def ws_frame(self) -> bytes:
        frame = self._frame
        if frame is None:
            data = self.data
            if isinstance(data, bytes):
                frame = ws_frame(OP_BINARY, data)
            else:
                frame = ws_frame(OP_TEXT, (str(int(self.type)) + (data or "")).encode())
            self._frame = frame
        return frame

    @property
    def polling(self) -> str:
        text = self._text
        if text is None:
            data = self.data
            if isinstance(data, bytes):
                text = "b" + base64.b64encode(data).decode("ascii")
            else:
                text = str(int(self.type)) + (data or "")
            self._text = text
        return text

    @property
    def size(self) -> int:
        """Bytes this packet occupies on a WebSocket (used for buffer accounting)."""
        return len(self.ws_frame)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.type.name}, {self.data!r})"


class OutgoingMessage(EncodedPacket):
    """An Engine.IO "message" packet (type 4) carrying one upper-layer payload."""

    __slots__ = ()

    def __init__(self, data: str | bytes) -> None:
        super().__init__(EnginePacketType.MESSAGE, data)


class UncompressedMessage(OutgoingMessage):
    """A message sent without per-message deflate even when the connection negotiated it."""

    __slots__ = ()
    compress = False


# Control packets are constants: their encodings are computed once per process.
PING = EncodedPacket(EnginePacketType.PING)
PONG_PROBE = EncodedPacket(EnginePacketType.PONG, "probe")
NOOP = EncodedPacket(EnginePacketType.NOOP)
CLOSE = EncodedPacket(EnginePacketType.CLOSE)
