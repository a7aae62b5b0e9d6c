"""Engine.IO packet codec: the decoder, and EncodedPacket/OutgoingMessage (the one encoder
production uses, with its cached encodings)."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from siopg.engine.errors import (
    BadHandshakeMethod,
    BadRequest,
    Forbidden,
    UnknownSessionId,
    UnknownTransport,
    UnsupportedProtocolVersion,
)
from siopg.engine.message import (
    CLOSE,
    NOOP,
    PING,
    PONG_PROBE,
    EncodedPacket,
    OutgoingMessage,
    ws_frame,
)
from siopg.engine.protocol import (
    SEPARATOR,
    EnginePacket,
    EnginePacketType,
    PacketDecodeError,
    decode_packet,
    decode_payload,
)


def test_text_packets_round_trip() -> None:
    for ptype in EnginePacketType:
        encoded = EncodedPacket(ptype, "data")
        assert encoded.ws_payload() == encoded.polling == f"{int(ptype)}data"
        assert decode_packet(encoded.ws_payload()) == EnginePacket(ptype, "data")
        assert decode_packet(encoded.polling) == EnginePacket(ptype, "data")


def test_bare_packets_have_no_data() -> None:
    assert decode_packet("2") == EnginePacket(EnginePacketType.PING, None)
    assert decode_packet("2probe") == EnginePacket(EnginePacketType.PING, "probe")
    assert decode_packet("4") == EnginePacket(EnginePacketType.MESSAGE, "")
    assert EncodedPacket(EnginePacketType.NOOP).ws_payload() == "6"


def test_binary_is_raw_over_websocket() -> None:
    assert OutgoingMessage(b"\x01\x02").ws_payload() == b"\x01\x02"
    assert decode_packet(b"\x01\x02") == EnginePacket(EnginePacketType.MESSAGE, b"\x01\x02")
    assert decode_packet(bytearray(b"\x00")) == EnginePacket(EnginePacketType.MESSAGE, b"\x00")


def test_payload_matches_the_reference_examples() -> None:
    # a polling payload is the packets' polling encodings joined by the record separator
    # (as EngineSession answers a GET)
    body = SEPARATOR.join(m.polling for m in (OutgoingMessage("hello"), OutgoingMessage(b"\x01\x02\x03\x04")))
    assert body == "4hello\x1ebAQIDBA=="
    assert decode_payload(body) == [
        EnginePacket(EnginePacketType.MESSAGE, "hello"),
        EnginePacket(EnginePacketType.MESSAGE, b"\x01\x02\x03\x04"),
    ]
    assert decode_payload("4test1\x1e4test2\x1e4test3") == [
        EnginePacket(EnginePacketType.MESSAGE, f"test{i}") for i in (1, 2, 3)
    ]


@pytest.mark.parametrize("raw", ["", "abc", "9", "x4", "b!!!notbase64", "bAQ"])
def test_garbage_packets_raise_decode_error(raw: str) -> None:
    with pytest.raises(PacketDecodeError):
        decode_packet(raw)


@pytest.mark.parametrize("body", ["", "4a\x1e\x1e4b", "4a\x1eabc", "\x1e"])
def test_garbage_payloads_raise_decode_error(body: str) -> None:
    with pytest.raises(PacketDecodeError):
        decode_payload(body)


def _parse_frame(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    gen = Frame.parse(reader.read_exact, mask=False)
    try:
        next(gen)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_ws_frame_matches_websockets_parser(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for opcode, expected in ((0x1, Opcode.TEXT), (0x2, Opcode.BINARY)):
        frame = _parse_frame(ws_frame(opcode, payload))
        assert frame.opcode is expected and frame.fin and frame.data == payload
        # and byte-identical to websockets' own serializer
        assert ws_frame(opcode, payload) == Frame(expected, payload).serialize(mask=False)


def test_outgoing_message_caches_encodings() -> None:
    text = OutgoingMessage("héllo")
    assert text.polling == "4héllo"
    assert text.ws_payload() == "4héllo"
    frame = text.ws_frame
    assert frame is text.ws_frame  # computed once, shared by every recipient
    assert _parse_frame(frame).data == "4héllo".encode()
    assert text.size == len(frame)

    binary = OutgoingMessage(memoryview(b"\x01\x02\x03\x04"))
    assert binary.polling == "bAQIDBA=="
    parsed = _parse_frame(binary.ws_frame)
    assert parsed.opcode is Opcode.BINARY and parsed.data == b"\x01\x02\x03\x04"


def test_control_packets() -> None:
    assert [p.polling for p in (PING, PONG_PROBE, NOOP, CLOSE)] == ["2", "3probe", "6", "1"]
    assert _parse_frame(PONG_PROBE.ws_frame).data == b"3probe"


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (UnknownTransport(), 400, b'{"code": 0, "message": "Transport unknown"}'),
        (UnknownSessionId(), 400, b'{"code": 1, "message": "Session ID unknown"}'),
        (BadHandshakeMethod(), 400, b'{"code": 2, "message": "Bad handshake method"}'),
        (BadRequest(), 400, b'{"code": 3, "message": "Bad request"}'),
        (Forbidden(), 403, b'{"code": 4, "message": "Forbidden"}'),
        (UnsupportedProtocolVersion(), 400, b'{"code": 5, "message": "Unsupported protocol version"}'),
    ],
)
def test_errors_carry_status_and_reference_body(error, status: int, body: bytes) -> None:  # type: ignore[no-untyped-def]
    assert error.status == status
    assert error.body() == body
