"""The default parser (socket.io-parser 4.2.x format): round trips, byte-exact comparison
with the reference JS encoder/decoder, and every malformed input we must reject."""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest

from siopg.parser import Packet, PacketType, ParseError, get_parser
from siopg.parser.default import DefaultDecoder

from .parser_bridge import NODE, from_wire, needs_node, random_packets, spec_of
from .parser_bridge import run_node as _run_node


def run_node(op: str, items: list[Any]) -> list[Any]:
    """Encode or decode with the reference socket.io-parser."""
    return _run_node("default", op, items)


SPEC = get_parser("default")
E, A = PacketType.EVENT, PacketType.ACK


def parts_to_wire(parts: list[str | bytes]) -> list[dict[str, str]]:
    return [
        {"s": x} if isinstance(x, str) else {"b": base64.b64encode(x).decode()} for x in parts
    ]


def parts_from_wire(parts: list[dict[str, str]]) -> list[str | bytes]:
    return [x["s"] if "s" in x else base64.b64decode(x["b"]) for x in parts]


def decode_all(parts: list[str | bytes], decoder: DefaultDecoder | None = None) -> Packet:
    decoder = decoder or SPEC.new_decoder()
    results = [decoder.add(x) for x in parts]
    assert all(r is None for r in results[:-1])
    assert results[-1] is not None
    return results[-1]


# Packets whose encoding must be byte-identical to socket.io-parser's.
CASES: list[Packet] = [
    Packet(PacketType.CONNECT),
    Packet(PacketType.CONNECT, "/admin", {"token": "abc"}),
    Packet(PacketType.CONNECT, "/", {"sid": "AbC-12_x", "pid": "p"}),
    Packet(PacketType.DISCONNECT, "/"),
    Packet(PacketType.DISCONNECT, "/chat"),
    Packet(E, "/", ["chat", {"user": "a", "text": "hello"}]),
    Packet(E, "/", ["ev"], 0),
    Packet(E, "/nsp", ["ev", 1, 2.5, -3, True, False, None, "x"], 42),
    Packet(E, "/", ["unicode", "héllo wörld 日本語 😀", {"ключ": "значение"}]),
    Packet(E, "/", ["esc", "quote\" back\\ nl\n tab\t cr\r bell\x07 del\x7f \u2028\u2029 </"]),
    Packet(E, "/", ["nums", 0, -0.5, 1.5e300, 1234567890123456, 2**53, -(2**31), 0.1]),
    Packet(E, "/", ["nested", {"a": [{"b": {"c": [1, [2, [3]]]}}], "e": {}, "f": []}]),
    Packet(E, "/", [7, "numeric event name"]),
    Packet(A, "/", []),
    Packet(A, "/", ["ok", {"n": 1}], 12),
    Packet(A, "/x", [None], 9007199254740991),
    Packet(PacketType.CONNECT_ERROR, "/", {"message": "Invalid namespace"}),
    Packet(PacketType.CONNECT_ERROR, "/a", {"message": "no", "data": {"code": 4}}),
    Packet(PacketType.CONNECT_ERROR, "/", "plain string"),
    Packet(E, "/", ["bin", b"\x00\x01\x02\xff"]),
    Packet(E, "/files", ["up", {"name": "a.png", "data": b"PNG" * 100}, [b"", b"x"]], 3),
    Packet(A, "/", [b"only"], 5),
    Packet(A, "/q", [{"deep": [[{"b": b"1"}], b"2"]}, "tail", b"3"]),
]


@pytest.mark.parametrize("packet", CASES, ids=range(len(CASES)))
def test_round_trip(packet: Packet) -> None:
    parts = SPEC.encoder.encode(packet)
    got = decode_all(parts)
    assert got == Packet(packet.type, packet.nsp, packet.data, packet.id)


@pytest.mark.parametrize("ptype", [PacketType.BINARY_EVENT, PacketType.BINARY_ACK])
def test_binary_types_are_chosen_from_the_data(ptype: PacketType) -> None:
    base = PacketType(ptype - 3)
    assert SPEC.encoder.encode(Packet(ptype, "/", ["a"])) == [f"{int(base)}[\"a\"]"]
    parts = SPEC.encoder.encode(Packet(base, "/", ["a", b"z"]))
    assert parts == [f'{int(ptype)}1-["a",{{"_placeholder":true,"num":0}}]', b"z"]
    assert decode_all(parts) == Packet(base, "/", ["a", b"z"])


def test_bytes_like_are_sent_as_bytes() -> None:
    parts = SPEC.encoder.encode(Packet(E, "/", ["a", bytearray(b"ab"), memoryview(b"cd"), (1, 2)]))
    assert parts[1:] == [b"ab", b"cd"]
    assert all(type(p) is bytes for p in parts[1:])
    assert decode_all(parts).data == ["a", b"ab", b"cd", [1, 2]]


def test_json_matches_javascript_quirks() -> None:
    enc = SPEC.encoder.encode
    assert enc(Packet(E, "/", ["f", float("nan"), float("inf"), -float("inf")])) == [
        '2["f",null,null,null]'
    ]
    assert enc(Packet(E, "/", ["f", 1.0, -0.0, 2.0**60, 1e16, 100.0])) == [
        '2["f",1,0,1152921504606847000,10000000000000000,100]'
    ]
    assert enc(Packet(E, "/", ["big", 2**70])) == ['2["big",1180591620717411303424]']
    assert enc(Packet(E, "/", ["s", "\ud800", "a\udfffb", "\ud83d\ude00"])) == [
        '2["s","\\ud800","a\\udfffb","😀"]'
    ]
    # strings that merely look like floats do not change
    assert enc(Packet(E, "/", ["v1.0", {"k": "e+17"}])) == ['2["v1.0",{"k":"e+17"}]']


def test_encoder_rejects_what_json_cannot_carry() -> None:
    with pytest.raises(TypeError, match="cannot send a object"):
        SPEC.encoder.encode(Packet(E, "/", ["x", object()]))
    with pytest.raises(TypeError, match="only allowed in EVENT and ACK"):
        SPEC.encoder.encode(Packet(PacketType.CONNECT, "/", {"b": b"x"}))
    cyclic: list[Any] = ["x"]
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="nested too deeply"):
        SPEC.encoder.encode(Packet(E, "/", cyclic))


# ------------------------------------------------------------------ against the JS reference

JS_EXTRA = [  # non-finite numbers, which JSON (our transport to node) cannot carry
    Packet(E, "/", ["f", float("nan"), float("inf"), {"x": -float("inf")}]),
    Packet(E, "/", ["s", "\ud800", "a\udfffb"]),
]


@pytest.fixture(scope="module")
def js_encoded() -> list[list[str | bytes]]:
    if NODE is None:
        pytest.skip("`node` is not on PATH: no JS reference")
    return [parts_from_wire(p) for p in run_node("encode", [spec_of(p) for p in CASES + JS_EXTRA])]


@needs_node
def test_encoding_is_byte_identical_to_socket_io_parser(js_encoded: list[Any]) -> None:
    ours = [SPEC.encoder.encode(p) for p in CASES + JS_EXTRA]
    for packet, mine, theirs in zip(CASES + JS_EXTRA, ours, js_encoded):
        assert mine == theirs, packet


@needs_node
def test_we_decode_what_socket_io_parser_encodes(js_encoded: list[Any]) -> None:
    for packet, parts in zip(CASES, js_encoded):
        assert decode_all(parts) == packet


@needs_node
def test_socket_io_parser_decodes_what_we_encode() -> None:
    items = [parts_to_wire(SPEC.encoder.encode(p)) for p in CASES]
    for packet, result in zip(CASES, run_node("decode", items)):
        assert "error" not in result, (packet, result)
        (decoded,) = result["packets"]
        assert decoded["type"] == int(packet.type)
        assert decoded["nsp"] == packet.nsp
        assert from_wire(decoded.get("data")) == packet.data
        assert decoded.get("id") == packet.id


# ------------------------------------------------------------------ malformed input

# (input, message fragment); the reference decoder rejects every one of these too.
MALFORMED = [
    ("7", "unknown packet type"),
    ("a[]", "unknown packet type"),
    ("9", "unknown packet type"),
    ("2{}", "EVENT data must be an array"),
    ('2"x"', "EVENT data must be an array"),
    ("2[]", "EVENT data must be an array"),
    ("2[null]", "EVENT data must be an array"),
    ("2[true]", "EVENT data must be an array"),
    ("2[{}]", "EVENT data must be an array"),
    ('2["disconnect"]', "reserved event name"),
    ('2["connect", 1]', "reserved event name"),
    ('2["connect_error"]', "reserved event name"),
    ('2["disconnecting"]', "reserved event name"),
    ('2["newListener"]', "reserved event name"),
    ('2["removeListener"]', "reserved event name"),
    ("2[1,", "invalid payload"),
    ("2[NaN]", "invalid payload"),
    ("2[Infinity]", "invalid payload"),
    ("2['a']", "invalid payload"),
    ('2["a"] x', "invalid payload"),
    ('2/chat,["a"', "invalid payload"),
    ("3{}", "ACK data must be an array"),
    ('31"a"', "ACK data must be an array"),
    ("0[]", "CONNECT data must be an object"),
    ('0"token"', "CONNECT data must be an object"),
    ("0null", "CONNECT data must be an object"),
    ("1{}", "DISCONNECT carries no data"),
    ("1/a,[]", "DISCONNECT carries no data"),
    ("4[]", "CONNECT_ERROR data must be a string or an object"),
    ("4true", "CONNECT_ERROR data must be a string or an object"),
    ("5", "illegal attachments"),
    ('5a-["a"]', "illegal attachments"),
    ('5-1-["a"]', "illegal attachments"),
    ('511-["a"]', "too many attachments"),
    ('51-["a",{"_placeholder":true,"num":1}]', "bad placeholder index"),
    ('51-["a",{"_placeholder":true,"num":-1}]', "bad placeholder index"),
    ('51-["a",{"_placeholder":true,"num":"0"}]', "bad placeholder index"),
    ('51-["a",{"_placeholder":true}]', "bad placeholder index"),
    ('51-["disconnect"]', "reserved event name"),
    ("61-{}", "ACK data must be an array"),
    ("2" + "[" * 100_000 + "]" * 100_000, "invalid payload"),
]


@pytest.mark.parametrize("text,message", MALFORMED, ids=[m[0][:30] for m in MALFORMED])
def test_malformed_text_is_rejected(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        SPEC.new_decoder().add(text)


@needs_node
def test_the_reference_rejects_the_same_inputs() -> None:
    results = run_node("decode", [[{"s": text}] for text, _ in MALFORMED])
    for (text, _), result in zip(MALFORMED, results):
        if "packets" in result:  # a binary header only fails once its attachments arrive
            assert result["packets"] == [], text[:40]
        else:
            assert "error" in result, text[:40]


# The reference accepts these (by accident of JavaScript's Number(), or EVENT/ACK/CONNECT_ERROR
# without data, which isPacketValid() calls invalid elsewhere); we are stricter.
STRICTER = ["4", "4 1", "", " []", '5-["a"]', '5 1-["a"]', "2 1[\"a\"]", "2" + "9" * 17 + '["a"]']


@pytest.mark.parametrize("text", STRICTER)
def test_quirky_inputs_are_rejected(text: str) -> None:
    with pytest.raises(ParseError):
        SPEC.new_decoder().add(text)


@pytest.mark.parametrize("text,ptype", [("2", E), ("3", A), ("2/chat,", E), ("31", A)])
def test_event_or_ack_without_payload_is_harmless(text: str, ptype: PacketType) -> None:
    """The reference decodes these with undefined data; the socket layer then ignores them."""
    packet = SPEC.new_decoder().add(text)
    assert packet is not None and packet.type == ptype and packet.data is None


def test_attachment_state_machine() -> None:
    dec = SPEC.new_decoder()
    with pytest.raises(ParseError, match="no binary packet is pending"):
        dec.add(b"\x00")
    assert dec.add('52-["a",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]') is None
    with pytest.raises(ParseError, match="text data while waiting"):
        dec.add('2["b"]')
    assert dec.add(b"first") is None
    assert dec.add(bytearray(b"second")) == Packet(E, "/", ["a", b"second", b"first"])
    with pytest.raises(ParseError, match="no binary packet is pending"):
        dec.add(b"extra")
    # reset drops a half-received packet
    assert dec.add('61-/x,4[{"_placeholder":true,"num":0}]') is None
    dec.reset()
    assert dec.add('3/x,4["plain"]') == Packet(A, "/x", ["plain"], 4)
    with pytest.raises(ParseError, match="unexpected message type"):
        dec.add(12)  # type: ignore[arg-type]


def test_binary_header_with_zero_attachments_is_complete() -> None:
    assert SPEC.new_decoder().add('50-["a",1]') == Packet(E, "/", ["a", 1])


def test_max_attachments_is_configurable() -> None:
    assert DefaultDecoder(max_attachments=20).add('520-["a"]') is None
    with pytest.raises(ParseError, match="too many attachments"):
        DefaultDecoder(max_attachments=1).add('52-["a"]')


def test_decoder_details() -> None:
    dec = SPEC.new_decoder()
    assert dec.add("0") == Packet(PacketType.CONNECT)
    assert dec.add("0/admin,") == Packet(PacketType.CONNECT, "/admin")
    assert dec.add("0/admin") == Packet(PacketType.CONNECT, "/admin")
    assert dec.add('0/a,{"token":1}') == Packet(PacketType.CONNECT, "/a", {"token": 1})
    assert dec.add('2 [ "a" , 1 ] ') == Packet(E, "/", ["a", 1])
    # no comma: all of it is the nsp, and an EVENT without payload is ignored upstream
    assert dec.add('2/a["x"]') == Packet(E, '/a["x"]', None)
    assert dec.add('2123["x"]').id == 123
    assert dec.add('2["x", 1e400]').data == ["x", float("inf")]
    assert dec.add('4"boom"') == Packet(PacketType.CONNECT_ERROR, "/", "boom")
    # placeholders in a non-binary packet are plain data, as in the reference
    ph = {"_placeholder": True, "num": 0}
    assert dec.add('2["a",{"_placeholder":true,"num":0}]').data == ["a", ph]


# ------------------------------------------------------------------ fuzzing


def _feed(dec: DefaultDecoder, message: str | bytes) -> None:
    try:
        dec.add(message)
    except ParseError:
        dec.reset()


def test_fuzz_random_input_only_raises_parse_error() -> None:
    rng = random.Random(1234)
    alphabet = '0123456789-/,[]{}":_ptrue\\ab\x00\ud800é'
    dec = SPEC.new_decoder()
    for _ in range(20_000):
        if rng.random() < 0.2:
            _feed(dec, rng.randbytes(rng.randint(0, 8)))
        else:
            _feed(dec, "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))))


def test_fuzz_mutated_packets_only_raise_parse_error() -> None:
    rng = random.Random(99)
    seeds = [p for packet in CASES for p in SPEC.encoder.encode(packet) if isinstance(p, str)]
    dec = SPEC.new_decoder()
    for _ in range(20_000):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(text) + 1)
            if op < 0.4 and text:
                del text[min(pos, len(text) - 1)]
            elif op < 0.8:
                text.insert(pos, rng.choice('0123456789-/,[]{}":\\'))
            elif text:
                text[min(pos, len(text) - 1)] = rng.choice("05-{}[]")
        _feed(dec, "".join(text))
        if rng.random() < 0.3:
            _feed(dec, rng.randbytes(3))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON-ish value with bytes (object keys never look like array indices,
    which JavaScript would reorder)."""
    kind = rng.randrange(10 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2**31, 2**32, 2**53 - 1])
    if kind == 1:
        return rng.randint(-(2**53) + 1, 2**53 - 1) >> rng.randrange(53)
    if kind == 2:
        return round(rng.uniform(-1e6, 1e6), rng.randrange(6))
    if kind == 3:
        alphabet = "ab \"\\\n\t\x01é日😀\u2028/"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
    if kind == 4:
        return rng.choice([True, False, None])
    if kind == 5:
        return rng.randbytes(rng.randrange(300))
    if kind < 8:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(8))]
    return {f"k{rng.randrange(10**6)}": random_value(rng, depth + 1) for _ in range(rng.randrange(8))}


@needs_node
def test_random_packets_match_socket_io_parser_byte_for_byte() -> None:
    rng = random.Random(2024)
    packets = random_packets(rng, random_value)
    theirs = run_node("encode", [spec_of(p) for p in packets])
    for packet, js in zip(packets, theirs):
        mine = SPEC.encoder.encode(packet)
        assert mine == parts_from_wire(js), packet
        assert decode_all(mine, DefaultDecoder(max_attachments=1000)) == packet
