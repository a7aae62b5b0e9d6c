"""Engine.IO protocol 4 packet codec (sans-I/O).

A packet is a type digit followed by its data. Over WebSocket, one packet is one frame and a
binary message is sent as a raw binary frame. Over HTTP long-polling, packets are joined
with the record separator ``\\x1e`` and binary messages are written as ``"b" + base64``.
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


class PacketType(IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


_TYPES_BY_CHAR = {str(int(t)): t for t in PacketType}


class PacketDecodeError(ValueError, SiopgError):
    """Raised for any input that is not a valid Engine.IO packet or payload."""


@dataclass(frozen=True, slots=True)
class Packet:
    type: PacketType
    data: str | bytes | None = None


def encode_packet(packet: Packet) -> str | bytes:
    """Encode one packet for a WebSocket frame: binary data stays raw bytes."""
    data = packet.data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return str(int(packet.type)) + (data or "")


def encode_packet_for_payload(packet: Packet) -> str:
    """Encode one packet as text, for a long-polling payload (binary as "b" + base64)."""
    data = packet.data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return "b" + base64.b64encode(data).decode("ascii")
    return str(int(packet.type)) + (data or "")


def decode_packet(raw: str | bytes) -> Packet:
    """Decode one packet (a WebSocket frame or one record of a polling payload)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return Packet(PacketType.MESSAGE, bytes(raw))
    if not raw:
        raise PacketDecodeError("empty packet")
    head = raw[0]
    if head == "b":
        try:
            return Packet(PacketType.MESSAGE, base64.b64decode(raw[1:], validate=True))
        except (binascii.Error, ValueError) as exc:
            raise PacketDecodeError("invalid base64 binary packet") from exc
    ptype = _TYPES_BY_CHAR.get(head)
    if ptype is None:
        raise PacketDecodeError(f"unknown packet type {head!r}")
    if len(raw) > 1:
        return Packet(ptype, raw[1:])
    # A bare "4" is an empty message; other bare types carry no data.
    return Packet(ptype, "" if ptype is PacketType.MESSAGE else None)


def encode_payload(packets: list[Packet]) -> str:
    """Encode packets as one long-polling response body."""
    return SEPARATOR.join(encode_packet_for_payload(p) for p in packets)


def decode_payload(body: str) -> list[Packet]:
    """Decode a long-polling request body; raises PacketDecodeError on the first bad record."""
    if not body:
        raise PacketDecodeError("empty payload")
    return [decode_packet(record) for record in body.split(SEPARATOR)]
