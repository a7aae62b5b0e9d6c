"""Fuzzing both Socket.IO decoders: whatever a peer sends, the only exception is ParseError,
and every packet they accept respects the shared bounds and can be sent on unchanged."""

from __future__ import annotations

import json
from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from siopg.parser import Packet, ParseError, get_parser
from siopg.parser.packet import MAX_ACK_ID, MAX_DEPTH, check_depth

from ._profile import FUZZ

PLACEHOLDER = st.builds(lambda n: {"_placeholder": True, "num": n}, st.integers(-2, 12))
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS | PLACEHOLDER,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=24,
)
EVENT_DATA = st.builds(lambda name, args: [name, *args], st.text(max_size=10), st.lists(JSON, max_size=3))


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# A default-parser message: <type>[<n>-][<nsp>,][<ack id>][<json>], every part sometimes wrong.
DEFAULT_TEXT = st.builds(
    lambda t, att, nsp, ack, body: f"{t}{att}{nsp}{ack}{body}",
    st.sampled_from([*"0123456", "7", "9", "a", "", "-", "/"]),
    st.one_of(
        st.just(""),
        st.integers(-1, 15).map(lambda n: f"{n}-"),
        st.text("0123456789-", max_size=5),
    ),
    st.one_of(
        st.just(""),
        st.text(max_size=8).map(lambda s: f"/{s},"),
        st.text(max_size=8).map(lambda s: f"/{s}"),
    ),
    st.one_of(st.just(""), st.integers(0, 2**70).map(str), st.text("0123456789", max_size=20)),
    st.one_of(
        st.just(""),
        EVENT_DATA.map(_json_text),
        JSON.map(_json_text),
        st.text(max_size=30),
        st.integers(1, 300).map(lambda n: "[" * n + "1" + "]" * n),
    ),
)
MESSAGES = st.lists(
    st.one_of(DEFAULT_TEXT, st.text(max_size=40), st.binary(max_size=16)), min_size=1, max_size=6
)


def check_accepted(name: str, packet: Packet) -> None:
    """A packet a decoder returned: within bounds, and its parser can encode it again."""
    assert 0 <= int(packet.type) <= 4
    assert type(packet.nsp) is str
    assert packet.id is None or (type(packet.id) is int and 0 <= packet.id <= MAX_ACK_ID)
    if type(packet.data) in (list, dict):
        check_depth(packet.data, MAX_DEPTH)
    spec = get_parser(name)
    encoded = spec.encoder.encode(packet)  # must not raise: servers relay what they receive
    decoder = spec.new_decoder()
    again = None
    for message in encoded:
        again = decoder.add(message)
    assert again is not None and again.type == packet.type and again.id == packet.id


def feed(name: str, messages: list[str | bytes]) -> None:
    decoder = get_parser(name).new_decoder()
    for message in messages:
        try:
            packet = decoder.add(message)
        except ParseError:
            return  # the connection closes here
        if packet is not None:
            check_accepted(name, packet)


@FUZZ
@given(MESSAGES)
def test_default_decoder_raises_only_parse_error(messages: list[str | bytes]) -> None:
    feed("default", messages)


@FUZZ
@given(st.text(max_size=200))
def test_default_decoder_on_any_text(text: str) -> None:
    feed("default", [text])


# ------------------------------------------------------------------ msgpack

EXT = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12))  # < 0: see splice
MP_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=12) | st.binary(max_size=12) | EXT
)
MP_VALUES = st.recursive(
    MP_SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-5, 5)), inner, max_size=4),
    max_leaves=24,
)
PACKET_MAP = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.integers(-2, 7), st.floats(), st.text(max_size=2), st.none()),
        "nsp": st.one_of(st.text(max_size=8), st.integers(-5, 5), st.none()),
        "data": st.one_of(MP_VALUES, st.lists(MP_VALUES, max_size=4).map(lambda v: ["ev", *v])),
        "id": st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=3)),
    },
)


def _packb(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True, strict_types=False)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = _packb(draw(PACKET_MAP))
    how = draw(st.sampled_from(["none", "truncate", "flip", "insert", "splice"]))
    if how == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif how == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
    elif how == "insert":
        i = draw(st.integers(0, len(raw)))
        raw = raw[:i] + draw(st.binary(min_size=1, max_size=6)) + raw[i:]
    elif how == "splice":
        # ext headers the exact decoder handles: timestamp (-1), fixext type 0, ext8 type 0
        piece = draw(st.sampled_from([b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff", b"\xd4\x00\x00",
                                      b"\xd7\x00", b"\xc7\x01\x00\x00", b"\xc7\x08\x00"]))
        i = draw(st.integers(0, len(raw)))
        raw = raw[:i] + piece + raw[i:]
    return raw


@FUZZ
@given(mutated())
def test_msgpack_decoder_raises_only_parse_error(raw: bytes) -> None:
    feed("msgpack", [raw])


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=120), st.text(max_size=20)), min_size=1, max_size=3))
def test_msgpack_decoder_on_any_bytes(messages: list[str | bytes]) -> None:
    feed("msgpack", messages)


@FUZZ
@given(st.integers(1, 1100), st.sampled_from([b"\xc0", b"\xd4\x00\x00", b"\xd6\xff\x00\x00\x00\x00"]))
def test_msgpack_deep_nesting(depth: int, leaf: bytes) -> None:
    raw = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa2ev" + b"\x91" * depth + leaf
    feed("msgpack", [raw])
