"""The msgpack parser (socket.io-msgpack-parser 3.0.2 / notepack.io): round trips, byte-exact
comparison with the reference JS encoder, decoding of everything notepack writes, and
rejection of malformed input."""

from __future__ import annotations

import base64
import math
import random
import struct
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest

from siopg.parser import Packet, PacketType, ParseError, get_parser

from .parser_bridge import NODE, b64, needs_node, random_packets, spec_of
from .parser_bridge import run_node as _run_node


def run_node(op: str, items: list[Any]) -> list[Any]:
    """Encode or decode with the reference socket.io-msgpack-parser."""
    return _run_node("msgpack", op, items)


SPEC = get_parser("msgpack")
E, A = PacketType.EVENT, PacketType.ACK


def encode(packet: Packet) -> bytes:
    (out,) = SPEC.encoder.encode(packet)
    assert type(out) is bytes
    return out


def decode(raw: bytes) -> Packet:
    got = SPEC.new_decoder().add(raw)
    assert got is not None
    return got


INTS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1, 2**53]
INTS += [-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**53) + 1]

CASES: list[Packet] = [
    Packet(PacketType.CONNECT),
    Packet(PacketType.CONNECT, "/admin", {"token": "abc"}),
    Packet(PacketType.CONNECT, "/", {"sid": "AbC-12_x", "pid": "p"}),
    Packet(PacketType.DISCONNECT, "/"),
    Packet(PacketType.DISCONNECT, "/chat"),
    Packet(E, "/", ["chat", {"user": "a", "text": "hello"}]),
    Packet(E, "/", ["ev"], 0),
    Packet(E, "/nsp", ["ev", 1, 2.5, -3, True, False, None, "x"], 42),
    Packet(E, "/", ["ints", *INTS]),
    Packet(E, "/", ["floats", 1.5, -0.25, 1.5e-300, -1e-300, 0.1, 123.456, 2.0**60 + 0.5 * 0]),
    Packet(E, "/", ["strings", "", "a" * 31, "b" * 32, "c" * 255, "d" * 256, "e" * 65536]),
    Packet(E, "/", ["unicode", "héllo wörld 日本語 😀", "ключ" * 20, {"ключ": "значение"}]),
    Packet(E, "/", ["arrays", list(range(15)), list(range(16)), [None] * 65536]),
    Packet(E, "/", ["maps", {f"k{i}": i for i in range(15)}, {f"k{i}": i for i in range(16)}]),
    Packet(E, "/", ["bin", b"", b"\x00" * 255, b"\x01" * 256, b"\x02" * 65536]),
    Packet(E, "/", ["nested", {"a": [{"b": {"c": [1, [2, [3]]]}}], "e": {}, "f": []}]),
    Packet(E, "/", [7, "numeric event name"]),
    Packet(A, "/", []),
    Packet(A, "/", ["ok", {"n": 1}], 12),
    Packet(A, "/x", [None, b"\xff"], 9007199254740991),
    Packet(PacketType.CONNECT_ERROR, "/", {"message": "Invalid namespace"}),
    Packet(PacketType.CONNECT_ERROR, "/a", {"message": "no", "data": {"code": 4}}),
    Packet(PacketType.CONNECT_ERROR, "/", "plain string"),
]


@pytest.mark.parametrize("packet", CASES, ids=range(len(CASES)))
def test_round_trip(packet: Packet) -> None:
    assert decode(encode(packet)) == packet


def test_binary_types_and_bytes_like() -> None:
    raw = encode(Packet(PacketType.BINARY_EVENT, "/", ["a", bytearray(b"x"), memoryview(b"y")]))
    assert decode(raw) == Packet(E, "/", ["a", b"x", b"y"])
    assert decode(encode(Packet(PacketType.BINARY_ACK, "/", [(1, 2)], 3))) == Packet(A, "/", [[1, 2]], 3)


def test_numbers_are_written_as_javascript_would() -> None:
    # integral floats are JS integers; ints beyond 64 bits become float64
    assert encode(Packet(E, "/", ["n", 2.0, -0.0, 1e10])) == encode(Packet(E, "/", ["n", 2, 0, 10**10]))
    raw = encode(Packet(E, "/", ["n", 2**64]))
    assert b"\xcb" + struct.pack(">d", 2.0**64) in raw  # notepack writes a wrong uint64 here
    assert decode(raw).data == ["n", 2.0**64]
    assert b"\xcb" + struct.pack(">d", 1e300) in encode(Packet(E, "/", ["n", 1e300]))
    assert decode(encode(Packet(E, "/", ["n", -(2**63) - 1, 1e300]))).data == ["n", -(2.0**63), 1e300]
    nan = decode(encode(Packet(E, "/", ["n", math.nan, math.inf]))).data
    assert math.isnan(nan[1]) and nan[2] == math.inf


def test_strings_with_surrogates_are_sent_as_utf8() -> None:
    raw = encode(Packet(E, "/", ["s", "\ud83d\ude00", "a\ud800"]))
    assert decode(raw).data == ["s", "😀", "a\ufffd"]


def test_dates_round_trip_as_notepack_dates() -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    raw = encode(Packet(E, "/", ["d", when]))
    assert b"\xd7\x00" + struct.pack(">q", 1714979289123) in raw
    assert decode(raw).data == ["d", when]


def test_encoder_rejects_unknown_types() -> None:
    with pytest.raises(TypeError, match="cannot send a object"):
        encode(Packet(E, "/", ["x", object()]))


# ------------------------------------------------------------------ against the JS reference

JS_EXTRA = [Packet(E, "/", ["f", math.nan, math.inf, {"x": -math.inf}])]


@pytest.fixture(scope="module")
def js_encoded() -> list[bytes]:
    if NODE is None:
        pytest.skip("`node` is not on PATH: no JS reference")
    out = run_node("encode", [spec_of(p) for p in CASES + JS_EXTRA])
    return [base64.b64decode(parts[0]["b"]) for parts in out]


@needs_node
def test_encoding_is_byte_identical_to_notepack(js_encoded: list[bytes]) -> None:
    for packet, theirs in zip(CASES + JS_EXTRA, js_encoded):
        assert encode(packet) == theirs, packet


@needs_node
def test_we_decode_what_notepack_encodes(js_encoded: list[bytes]) -> None:
    for packet, raw in zip(CASES, js_encoded):
        assert decode(raw) == packet


UNDEF = {"$undefined": True}

# (JS packet spec using tags, the Python packet we must decode it to)
JS_ONLY_VALUES = [
    (
        {"type": 2, "nsp": "/", "data": ["u", UNDEF, {"k": UNDEF}, [UNDEF]]},
        Packet(E, "/", ["u", None, {"k": None}, [None]]),
    ),
    (
        {"type": 2, "nsp": "/", "data": ["ab", {"$ab": b64(b"\x00")}, {"$ab": b64(b"12345678")}]},
        Packet(E, "/", ["ab", b"\x00", b"12345678"]),
    ),
    (
        {"type": 2, "nsp": "/", "data": ["u8", {"$u8": ""}, {"$u8": b64(b"\x07")}, {"$u8": b64(b"abc")}]},
        Packet(E, "/", ["u8", b"", b"\x07", b"abc"]),
    ),
    (
        {"type": 2, "nsp": "/", "data": ["big", {"$u8": b64(b"z" * 70000)}, {"$ab": b64(b"y" * 300)}]},
        Packet(E, "/", ["big", b"z" * 70000, b"y" * 300]),
    ),
    (
        {"type": 2, "nsp": "/", "data": ["date", {"$date": 1714979289123}, {"$date": -1000}]},
        Packet(
            E,
            "/",
            [
                "date",
                datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
                datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
            ],
        ),
    ),
    (
        {"type": 2, "nsp": "/", "data": ["mixed", UNDEF, {"$u8": b64(b"\x00")}, {"$date": 0}]},
        Packet(E, "/", ["mixed", None, b"\x00", datetime(1970, 1, 1, tzinfo=UTC)]),
    ),
    ({"type": 0, "nsp": "/", "data": UNDEF}, Packet(PacketType.CONNECT)),
    ({"type": 3, "nsp": "/", "data": [], "id": UNDEF}, Packet(A, "/", [])),
]


@needs_node
def test_we_decode_undefined_arraybuffers_typed_arrays_and_dates() -> None:
    out = run_node("encode", [spec for spec, _ in JS_ONLY_VALUES])
    for (spec, expected), parts in zip(JS_ONLY_VALUES, out):
        assert decode(base64.b64decode(parts[0]["b"])) == expected, spec


def test_client_packets_with_extra_keys() -> None:
    # socket.io-client sends {type, data, options: {compress}, id?, nsp}
    raw = msgpack.packb(
        {"type": 2, "data": ["ev", 1], "options": {"compress": True}, "id": 4, "nsp": "/"}
    )
    assert decode(raw) == Packet(E, "/", ["ev", 1], 4)


def test_other_encodings_notepack_reads() -> None:
    def pkt(*items: bytes) -> bytes:  # {"type":2,"nsp":"/","data":[<items>]}
        return (
            b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data"
            + bytes([0x90 | (len(items) + 1)])
            + b"\xa1e"
            + b"".join(items)
        )

    assert decode(pkt(b"\xca" + struct.pack(">f", 1.5))).data == ["e", 1.5]
    assert decode(pkt(b"\xd4\x05\x01")).data == ["e", [5, b"\x01"]]
    assert decode(pkt(b"\xd6\xff\x00\x00\x00\x01")).data == ["e", [-1, b"\x00\x00\x00\x01"]]
    assert decode(pkt(b"\xc7\x02\x09ab")).data == ["e", [9, b"ab"]]
    assert decode(pkt(b"\xc8\x00\x01\x00\x07")).data == ["e", b"\x07"]  # ext16 type 0
    assert decode(pkt(b"\xd4\x00\x00")).data == ["e", None]  # undefined
    assert decode(pkt(b"\xcf" + (2**64 - 1).to_bytes(8, "big"))).data == ["e", 2**64 - 1]
    assert decode(pkt(b"\xd3" + (-(2**63)).to_bytes(8, "big", signed=True))).data == ["e", -(2**63)]
    assert decode(pkt(b"\x82\x01\xa1a\xc3\xa1b")).data == ["e", {"1": "a", "true": "b"}]
    assert decode(pkt(b"\xa2\xff\xfe")).data == ["e", "\ufffd\ufffd"]  # bad UTF-8 is replaced
    assert decode(msgpack.packb({"type": 2.0, "nsp": "/", "data": ["a"], "id": 3.0})).id == 3


# ------------------------------------------------------------------ malformed input


def _p(obj: Any) -> bytes:
    return msgpack.packb(obj)


MALFORMED: list[tuple[bytes, str]] = [
    (b"", "truncated"),
    (b"\xc1", "invalid msgpack byte"),
    (b"\x83\xa4type", "truncated"),
    (_p({"type": 2, "nsp": "/", "data": ["a"]}) + b"\x00", "trailing bytes"),
    (b"\xdd\xff\xff\xff\xff", "truncated"),
    (b"\xdf\xff\xff\xff\xff", "truncated"),
    (b"\xdb\xff\xff\xff\xff", "truncated"),
    (b"\xc6\xff\xff\xff\xff", "truncated"),
    (b"\xc9\xff\xff\xff\xff\x00", "truncated"),
    (b"\x91" * 100_000 + b"\xc0", "nested too deeply"),
    (_p([2, "/", ["a"]]), "not a map"),
    (_p(2), "not a map"),
    (_p({"nsp": "/", "data": ["a"]}), "invalid packet type"),
    (_p({"type": 5, "nsp": "/", "data": ["a"]}), "invalid packet type"),
    (_p({"type": -1, "nsp": "/", "data": ["a"]}), "invalid packet type"),
    (_p({"type": True, "nsp": "/", "data": ["a"]}), "invalid packet type"),
    (_p({"type": 2.5, "nsp": "/", "data": ["a"]}), "invalid packet type"),
    (_p({"type": "2", "nsp": "/", "data": ["a"]}), "invalid packet type"),
    (_p({"type": 2, "data": ["a"]}), "invalid namespace"),
    (_p({"type": 2, "nsp": 1, "data": ["a"]}), "invalid namespace"),
    (_p({"type": 2, "nsp": "/"}), "EVENT data must be an array"),
    (_p({"type": 2, "nsp": "/", "data": {"a": 1}}), "EVENT data must be an array"),
    (_p({"type": 3, "nsp": "/", "data": "x"}), "ACK data must be an array"),
    (_p({"type": 0, "nsp": "/", "data": []}), "CONNECT data must be an object"),
    (_p({"type": 0, "nsp": "/", "data": None}), "CONNECT data must be an object"),
    (_p({"type": 1, "nsp": "/", "data": {}}), "DISCONNECT carries no data"),
    (_p({"type": 4, "nsp": "/", "data": 3}), "CONNECT_ERROR data must be"),
    (_p({"type": 2, "nsp": "/", "data": ["a"], "id": "1"}), "invalid packet id"),
    (_p({"type": 2, "nsp": "/", "data": ["a"], "id": 1.5}), "invalid packet id"),
    (_p({"type": 2, "nsp": "/", "data": ["a"], "id": None}), "invalid packet id"),
]


@pytest.mark.parametrize("raw,message", MALFORMED, ids=[m[1] + str(i) for i, m in enumerate(MALFORMED)])
def test_malformed_input_is_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        SPEC.new_decoder().add(raw)


@needs_node
def test_the_reference_rejects_the_same_inputs() -> None:
    # the reference misses only what we add on purpose: nesting limit, EVENT name checks
    # notepack spins on an ext32 type 0 of length 2**32-1 (new ArrayBuffer(4 GiB)): skip it
    cases = [(raw, message) for raw, message in MALFORMED if not raw.startswith(b"\xc9")]
    items = [[{"b": b64(raw)}] for raw, _ in cases]
    for (raw, message), result in zip(cases, run_node("decode", items)):
        if message in ("nested too deeply", "EVENT data must be an array") and "error" not in result:
            continue
        assert "error" in result, (raw[:40], message, result)


def test_stricter_than_the_reference() -> None:
    # socket.io-msgpack-parser lets clients emit reserved or nameless events; we do not
    for data in (["disconnect"], [], [None], [{"a": 1}]):
        with pytest.raises(ParseError, match="EVENT data|reserved event name"):
            SPEC.new_decoder().add(_p({"type": 2, "nsp": "/", "data": data}))
    with pytest.raises(ParseError, match="binary messages"):
        SPEC.new_decoder().add('{"type":2}')
    with pytest.raises(ParseError, match="invalid map key"):
        SPEC.new_decoder().add(b"\x81\x90\x01")


def test_reset_is_harmless() -> None:
    dec = SPEC.new_decoder()
    dec.reset()
    assert dec.add(bytearray(_p({"type": 2, "nsp": "/", "data": ["a"]}))) == Packet(E, "/", ["a"])


# ------------------------------------------------------------------ fuzzing


def _feed(message: bytes | str) -> None:
    try:
        SPEC.new_decoder().add(message)
    except ParseError:
        pass


def test_fuzz_random_input_only_raises_parse_error() -> None:
    rng = random.Random(4321)
    for _ in range(20_000):
        _feed(rng.randbytes(rng.randint(0, 24)))
    for _ in range(200):
        _feed("".join(chr(rng.randrange(0x10000)) for _ in range(rng.randint(0, 8))))


def test_fuzz_mutated_packets_only_raise_parse_error() -> None:
    rng = random.Random(77)
    seeds = [encode(p) for p in CASES if len(encode(p)) < 2000]
    interesting = [0x00, 0x01, 0x08, 0x7F, 0x80, 0x90, 0xA0, 0xC0, 0xC1, 0xC7, 0xCA, 0xCB, 0xD4, 0xD6, 0xD7, 0xDC, 0xDE, 0xFF]
    for _ in range(20_000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(raw) + 1)
            op = rng.random()
            if op < 0.3 and raw:
                del raw[min(pos, len(raw) - 1)]
            elif op < 0.6:
                raw.insert(pos, rng.choice(interesting))
            elif raw:
                raw[min(pos, len(raw) - 1)] = rng.choice(interesting)
        _feed(bytes(raw))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random value notepack can write (object keys never look like array indices,
    which JavaScript would reorder)."""
    kind = rng.randrange(10 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(INTS)
    if kind == 1:
        return rng.randint(-(2**53) + 1, 2**53 - 1) >> rng.randrange(53)
    if kind == 2:
        return rng.choice([rng.uniform(-1e6, 1e6), round(rng.uniform(-1e3, 1e3), 1), 2.0**rng.randrange(64)])
    if kind == 3:
        alphabet = "ab \"\\\n\x00é日😀ключ"
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([5, 31, 32, 40, 300])))
    if kind == 4:
        return rng.choice([True, False, None])
    if kind == 5:
        return rng.randbytes(rng.choice([0, 1, 8, 255, 256, 1000]))
    if kind < 8:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(8))]
    return {f"k{rng.randrange(10**6)}": random_value(rng, depth + 1) for _ in range(rng.randrange(8))}


@needs_node
def test_random_packets_match_notepack_byte_for_byte() -> None:
    rng = random.Random(2025)
    packets = random_packets(rng, random_value)
    theirs = run_node("encode", [spec_of(p) for p in packets])
    for packet, js in zip(packets, theirs):
        mine = encode(packet)
        assert mine == base64.b64decode(js[0]["b"]), packet
        assert decode(mine) == packet
