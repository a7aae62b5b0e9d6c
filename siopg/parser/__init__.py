"""Socket.IO packet parsers (sans-I/O): packets <-> Engine.IO message payloads.

``get_parser("default")`` is socket.io-parser's format (JSON text plus binary attachments);
``get_parser("msgpack")`` is socket.io-msgpack-parser's. A server picks one by name, shares
its stateless encoder and makes one decoder per connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .default import DefaultDecoder, DefaultEncoder
from .msgpack_parser import MsgpackDecoder, MsgpackEncoder
from .packet import Packet, PacketType, ParseError

__all__ = [
    "PARSERS",
    "Decoder",
    "Encoder",
    "Packet",
    "PacketType",
    "ParseError",
    "ParserSpec",
    "get_parser",
]


class Encoder(Protocol):
    def encode(self, packet: Packet) -> list[str | bytes]:
        """Engine message payloads for ``packet``, in order."""
        ...


class Decoder(Protocol):
    def add(self, message: str | bytes) -> Packet | None:
        """Feed one engine message; None while a packet waits for attachments."""
        ...

    def reset(self) -> None:
        """Drop a partially received binary packet."""
        ...


@dataclass(frozen=True)
class ParserSpec:
    """One kind of parser: a shared encoder and a factory of per-connection decoders."""

    name: str
    encoder: Encoder
    decoder_factory: Callable[[], Decoder] = field(repr=False)

    def new_decoder(self) -> Decoder:
        return self.decoder_factory()


PARSERS: dict[str, ParserSpec] = {
    "default": ParserSpec("default", DefaultEncoder(), DefaultDecoder),
    "msgpack": ParserSpec("msgpack", MsgpackEncoder(), MsgpackDecoder),
}


def get_parser(name: str) -> ParserSpec:
    """The parser registered under ``name`` ("default" or "msgpack")."""
    try:
        return PARSERS[name]
    except KeyError:
        raise ValueError(f"unknown parser {name!r}: expected one of {sorted(PARSERS)}") from None
