"""Bounds both parsers share: data nesting depth and ack ids; only ParseError escapes."""

from __future__ import annotations

import sys

import msgpack
import pytest

from siopg.parser import Packet, PacketType, ParseError, get_parser
from siopg.parser.packet import MAX_ACK_ID, MAX_DEPTH

E = PacketType.EVENT
UNDEFINED = b"\xd4\x00\x00"  # notepack's `undefined` (fixext1 type 0)


def default_text(depth: int) -> str:
    if depth == 1:
        return '2["ev"]'
    return '2["ev",' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "]"


def msgpack_raw(depth: int, with_undefined: bool = False) -> bytes:
    """A notepack EVENT whose data nests `depth` levels, written by hand (msgpack-python
    refuses to write deep data); the innermost leaf is 1 or `undefined`."""
    leaf = UNDEFINED if with_undefined else b"\x01"
    inner = b"\x91" * (depth - 1) + leaf if depth > 1 else b""
    head = b"\x92\xa2ev" if depth > 1 else b"\x91\xa2ev"
    return b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data" + head + inner


def decode_default(text: str) -> Packet | None:
    return get_parser("default").new_decoder().add(text)


def decode_msgpack(raw: bytes) -> Packet | None:
    return get_parser("msgpack").new_decoder().add(raw)


def test_default_parser_depth_bound() -> None:
    assert decode_default(default_text(MAX_DEPTH)) is not None
    for depth in (MAX_DEPTH + 1, 900, 5000, 100_000):
        with pytest.raises(ParseError, match="nested too deeply|invalid payload"):
            decode_default(default_text(depth))


@pytest.mark.parametrize("with_undefined", [False, True])
def test_msgpack_parser_depth_bound(with_undefined: bool) -> None:
    ok = decode_msgpack(msgpack_raw(MAX_DEPTH, with_undefined))
    assert ok is not None
    for depth in (MAX_DEPTH + 1, 900, 1000, 1023, 1100, 100_000):
        # 900-1023 levels: the C library decodes them, and `undefined` used to make the
        # Python post-processing raise RecursionError with a traceback
        with pytest.raises(ParseError, match="nested too deeply"):
            decode_msgpack(msgpack_raw(depth, with_undefined))


def test_msgpack_depth_bound_holds_on_a_deep_stack() -> None:
    """The bound holds however deep the caller's stack is (no RecursionError leaks)."""
    raw = msgpack_raw(950, with_undefined=True)

    def recurse(n: int) -> None:
        if n:
            recurse(n - 1)
            return
        with pytest.raises(ParseError):
            decode_msgpack(raw)

    recurse(sys.getrecursionlimit() - 150)


@pytest.mark.parametrize("ack_id", [0, 1, MAX_ACK_ID])
def test_ack_ids_in_range(ack_id: int) -> None:
    got = decode_default(f'2{ack_id}["ev"]')
    assert got is not None and got.id == ack_id
    got = decode_msgpack(msgpack.packb({"type": 2, "nsp": "/", "data": ["ev"], "id": ack_id}))
    assert got is not None and got.id == ack_id


@pytest.mark.parametrize("ack_id", [MAX_ACK_ID + 1, 2**64 - 1, -1, -(2**63), 1e300, float(2**60)])
def test_ack_ids_out_of_range(ack_id: float) -> None:
    with pytest.raises(ParseError):
        decode_msgpack(msgpack.packb({"type": 2, "nsp": "/", "data": ["ev"], "id": ack_id}))
    if isinstance(ack_id, int) and ack_id >= 0:
        with pytest.raises(ParseError, match="ack id"):
            decode_default(f'2{ack_id}["ev"]')
