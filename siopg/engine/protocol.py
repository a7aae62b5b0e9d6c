"""Engine.IO protocol 4 packet decoder (sans-I/O).

A packet is a type digit followed by its data. Over WebSocket, one packet is one frame and a
binary message is sent as a raw binary frame. Over HTTP long-polling, packets are joined
with the record separator ``\\x1e`` and binary messages are written as ``"b" + base64``.
Encoding is :class:`~siopg.engine.message.EncodedPacket`'s job (it caches both encodings).
Every malformed input raises :class:`PacketDecodeError` (never another exception), so the
session can close with the reason ``"parse error"``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import IntEnum

from ..errors import SiopgError

SEPARATOR = "\x1e"


class EnginePacketType(IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


_TYPES_BY_CHAR = {str(int(t)): t for t in EnginePacketType}


class PacketDecodeError(ValueError, SiopgError):
    """Raised for any input that is not a valid Engine.IO packet or payload."""


@dataclass(frozen=True, slots=True)
class EnginePacket:
    type: EnginePacketType
    data: str | bytes | None = None


def decode_packet(raw: str | bytes) -> EnginePacket:
    """Decode one packet (a WebSocket frame or one record of a polling payload)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return EnginePacket(EnginePacketType.MESSAGE, bytes(raw))
    if not raw:
        raise PacketDecodeError("empty packet")
    head = raw[0]
    if head == "b":
        try:
            return EnginePacket(EnginePacketType.MESSAGE, base64.b64decode(raw[1:], validate=True))
        except (binascii.Error, ValueError) as exc:
            raise PacketDecodeError("invalid base64 binary packet") from exc
    ptype = _TYPES_BY_CHAR.get(head)
    if ptype is None:
        raise PacketDecodeError(f"unknown packet type {head!r}")
    if len(raw) > 1:
        return EnginePacket(ptype, raw[1:])
    # A bare "4" is an empty message; other bare types carry no data.
    return EnginePacket(ptype, "" if ptype is EnginePacketType.MESSAGE else None)


def decode_payload(body: str) -> list[EnginePacket]:
    """Decode a long-polling request body; raises PacketDecodeError on the first bad record."""
    if not body:
        raise PacketDecodeError("empty payload")
    return [decode_packet(record) for record in body.split(SEPARATOR)]
