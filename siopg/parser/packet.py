"""Socket.IO packet model shared by every parser (protocol 5)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from siopg.errors import SiopgError
from siopg.names import RESERVED_EVENTS


class PacketType(IntEnum):
    """Packet types of the Socket.IO protocol (v5)."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


@dataclass(slots=True)
class Packet:
    """One Socket.IO packet.

    Decoders always yield EVENT/ACK (never the BINARY_* types) with ``bytes`` in place of
    attachments; encoders pick BINARY_* on their own when the data holds bytes.
    """

    type: PacketType
    nsp: str = "/"
    data: Any = None  # EVENT/ACK: list; CONNECT: dict | None; CONNECT_ERROR: dict | str
    id: int | None = None  # ack id


class ParseError(ValueError, SiopgError):
    """Malformed input from a peer: the only exception a decoder raises."""


# Bounds both decoders apply to what a peer sends, so every layer above can walk the data
# recursively and hand ack ids to JavaScript peers unchanged.
MAX_DEPTH = 200  # nesting levels of lists/objects in a packet's data (the data itself is 1)
MAX_ACK_ID = 2**53 - 1  # largest integer a JavaScript peer can represent exactly


def check_depth(data: Any, limit: int = MAX_DEPTH) -> None:
    """Raise ParseError if lists/dicts in ``data`` nest deeper than ``limit`` (iterative)."""
    stack = [(data, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > limit:
            raise ParseError(f"packet data nested too deeply (more than {limit} levels)")
        depth += 1
        for value in node if type(node) is list else node.values():
            tv = type(value)
            if tv is list or tv is dict:
                push((value, depth))


# RESERVED_EVENTS (event names a peer may not emit) is the one list of siopg.names, imported
# above; `siopg.parser.packet.RESERVED_EVENTS` stays importable for the parser's callers.


def check_payload(ptype: int, data: Any, present: bool) -> None:
    """Raise ParseError unless ``data`` is valid for a packet of type ``ptype``.

    Mirrors socket.io-parser's isDataValid: CONNECT an object or nothing, DISCONNECT
    nothing, CONNECT_ERROR a string or an object, EVENT an array led by a non-reserved
    event name (or a number), ACK an array.
    """
    if ptype == 2:
        if type(data) is list and data:
            first = data[0]
            tf = type(first)
            if tf is str:
                if first in RESERVED_EVENTS:
                    raise ParseError(f"invalid payload: {first!r} is a reserved event name")
                return
            if tf is int or tf is float:
                return
        raise ParseError("invalid payload: EVENT data must be an array led by an event name")
    if ptype == 3:
        if type(data) is not list:
            raise ParseError("invalid payload: ACK data must be an array")
    elif ptype == 0:
        if present and type(data) is not dict:
            raise ParseError("invalid payload: CONNECT data must be an object")
    elif ptype == 1:
        if present:
            raise ParseError("invalid payload: DISCONNECT carries no data")
    elif ptype == 4:
        if not present or type(data) not in (str, dict):
            raise ParseError("invalid payload: CONNECT_ERROR data must be a string or an object")
    else:  # pragma: no cover - callers check the type first
        raise ParseError(f"unknown packet type {ptype}")
