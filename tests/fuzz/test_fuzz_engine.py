"""Fuzzing the Engine.IO decoders: packets, polling payloads (``\\x1e`` records, ``b`` +
base64) and a session fed POST bodies and WebSocket frames. The only exception a peer can
cause is the protocol's own (PacketDecodeError, or an EngineError answered with a 4xx), and
a session never breaks: it stays open or closes with a reason."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from siopg.engine.errors import EngineError
from siopg.engine.message import EncodedPacket
from siopg.engine.protocol import (
    SEPARATOR,
    EnginePacket,
    PacketDecodeError,
    decode_packet,
    decode_payload,
)
from siopg.engine.session import EngineSession, SessionConfig, State

from ._profile import FUZZ

B64 = st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode())
RECORD = st.one_of(
    st.builds(lambda t, d: t + d, st.sampled_from([*"0123456789b", "", "x"]), st.text(max_size=20)),
    B64.map(lambda s: "b" + s),
    st.builds(lambda s, cut: "b" + s[:cut], B64, st.integers(0, 30)),  # broken padding
    st.text(max_size=20),
)
PAYLOAD = st.lists(RECORD, max_size=8).map(SEPARATOR.join)


def valid_packet(packet: EnginePacket) -> None:
    assert 0 <= int(packet.type) <= 6
    assert packet.data is None or isinstance(packet.data, (str, bytes))


@FUZZ
@given(st.one_of(RECORD, st.text(max_size=60), st.binary(max_size=60)))
def test_decode_packet_raises_only_its_error(raw: str | bytes) -> None:
    try:
        valid_packet(decode_packet(raw))
    except PacketDecodeError:
        pass


@FUZZ
@given(st.one_of(PAYLOAD, st.text(max_size=200)))
def test_decode_payload_raises_only_its_error(body: str) -> None:
    try:
        packets = decode_payload(body)
    except PacketDecodeError:
        return
    assert len(packets) == body.count(SEPARATOR) + 1
    for packet in packets:
        valid_packet(packet)


class NullDriver:
    """A session driver that records what the peer's input made the session do."""

    def __init__(self) -> None:
        self.delivered: list[str | bytes] = []
        self.closed: list[str] = []

    def request_flush(self) -> None: ...
    def set_deadline(self, when: float | None) -> None: ...
    def poll_alive(self) -> bool:
        return True

    def answer_poll(self, body: str, packets: Sequence[EncodedPacket] = ()) -> None: ...
    def ws_write(self, packets: Sequence[EncodedPacket]) -> int:
        return 0

    def ws_close(self) -> None: ...

    def deliver(self, data: str | bytes) -> None:
        self.delivered.append(data)

    def session_closed(self, reason: str, description: str | None) -> None:
        self.closed.append(reason)


CONTENT_TYPES = st.sampled_from([None, "text/plain;charset=UTF-8", "application/octet-stream", "x"])
BODIES = st.one_of(
    PAYLOAD.map(lambda s: s.encode()), st.binary(max_size=120), st.none(),
    st.text(max_size=50).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


@FUZZ
@given(st.lists(st.tuples(BODIES, CONTENT_TYPES), min_size=1, max_size=4))
def test_polling_session_survives_any_post(posts: list[tuple[bytes | None, str | None]]) -> None:
    driver = NullDriver()
    session = EngineSession("s", "polling", SessionConfig(max_http_buffer_size=100), driver, lambda: 0.0)
    session.open()
    for body, content_type in posts:
        if not session.is_open:
            break
        session.begin_post()
        try:
            assert session.on_post(body, content_type) == "ok"
        except EngineError as err:
            assert 400 <= err.status < 500
            assert session.state is State.CLOSED  # a refused body ends the session, with a reason
    assert len(driver.closed) <= 1
    assert all(isinstance(d, (str, bytes)) for d in driver.delivered)


@FUZZ
@given(st.lists(st.one_of(RECORD, st.binary(max_size=30)), min_size=1, max_size=8))
def test_websocket_session_survives_any_frame(frames: list[str | bytes]) -> None:
    driver = NullDriver()
    session = EngineSession("s", "websocket", SessionConfig(), driver, lambda: 0.0)
    session.open()
    for frame in frames:
        session.on_ws_message(frame)  # never raises: bad input closes with "parse error"
    assert len(driver.closed) <= 1
    assert session.state in (State.OPEN, State.CLOSED)
