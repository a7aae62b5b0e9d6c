"""The Engine.IO session state machine, driven without sockets or timers."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from siopg.engine.errors import BadRequest, PayloadTooLarge
from siopg.engine.message import EncodedPacket, OutgoingMessage
from siopg.engine.session import EngineSession, SessionConfig, State

CFG = SessionConfig(ping_interval=25.0, ping_timeout=20.0, upgrade_timeout=10.0,
                    max_http_buffer_size=100, max_buffer_size=1000)


class FakeDriver:
    """Records what the session asks of its binding; the clock is manual."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.flush_requests = 0
        self.deadline: float | None = None
        self.polls: list[str] = []
        self.poll_open = True  # the parked GET's connection
        self.answered: list[EncodedPacket] = []  # packets of the last poll answer
        self.ws: list[bytes] = []
        self.ws_writes = 0
        self.ws_closed = 0
        self.buffer = 0
        self.messages: list[str | bytes] = []
        self.closes: list[tuple[str, str | None]] = []

    def request_flush(self) -> None:
        self.flush_requests += 1

    def set_deadline(self, when: float | None) -> None:
        self.deadline = when

    def poll_alive(self) -> bool:
        return self.poll_open

    def answer_poll(self, body: str, packets: Sequence[EncodedPacket] = ()) -> None:
        self.polls.append(body)
        self.answered = list(packets)

    def ws_write(self, packets: Sequence[EncodedPacket]) -> int:
        self.ws_writes += 1
        self.ws.extend(p.ws_payload() for p in packets)  # type: ignore[misc]
        return self.buffer

    def ws_close(self) -> None:
        self.ws_closed += 1

    def deliver(self, data: str | bytes) -> None:
        self.messages.append(data)

    def session_closed(self, reason: str, description: str | None) -> None:
        self.closes.append((reason, description))


def make(transport: str = "polling", cfg: SessionConfig = CFG) -> tuple[EngineSession, FakeDriver]:
    driver = FakeDriver()
    session = EngineSession("sid1", transport, cfg, driver, lambda: driver.now)
    return session, driver


def fire(session: EngineSession, driver: FakeDriver, at: float) -> None:
    driver.now = at
    driver.deadline = None  # the timer is spent, as in the real driver
    session.on_deadline()


def test_open_packet_and_first_ping_deadline() -> None:
    session, driver = make()
    packet = session.open()
    assert packet.polling[0] == "0"
    assert json.loads(packet.polling[1:]) == {
        "sid": "sid1", "upgrades": ["websocket"], "pingInterval": 25000,
        "pingTimeout": 20000, "maxPayload": 100,
    }
    assert session.state is State.OPEN
    assert driver.deadline == 1025.0
    ws_session, _ = make("websocket")
    assert json.loads(ws_session.open().polling[1:])["upgrades"] == []


def test_polling_get_parks_then_gets_queued_messages_as_one_payload() -> None:
    session, driver = make()
    session.open()
    assert session.on_poll() is None  # parked
    session.send([OutgoingMessage("a")])
    session.send([OutgoingMessage(b"\x01")])
    assert driver.flush_requests == 1  # one flush per tick, however many sends
    session.flush()
    assert driver.polls == ["4a\x1ebAQ=="]
    session.send([OutgoingMessage("b")])
    session.flush()  # no GET parked: stays queued
    assert session.on_poll() == "4b"


def test_overlapping_get_is_refused_and_closes_the_session() -> None:
    session, driver = make()
    session.open()
    assert session.on_poll() is None
    with pytest.raises(BadRequest):
        session.on_poll()
    assert driver.polls == ["1"]  # the first GET gets the close packet
    assert driver.closes == [("transport error", "overlap from client")]
    with pytest.raises(BadRequest):
        session.on_poll()  # closed


def test_post_delivers_messages_and_handles_pong() -> None:
    session, driver = make()
    session.open()
    fire(session, driver, 1025.0)  # ping due
    assert session.on_poll() == "2"
    assert driver.deadline == 1045.0  # pong deadline
    driver.now = 1030.0
    session.begin_post()
    assert session.on_post(b"4hello\x1ebAQIDBA==\x1e3") == "ok"
    assert driver.messages == ["hello", b"\x01\x02\x03\x04"]
    assert driver.deadline == 1055.0  # next ping, timeout cleared


def test_pong_timeout_closes_with_ping_timeout() -> None:
    session, driver = make()
    session.open()
    fire(session, driver, 1025.0)
    assert session.on_poll() == "2"
    fire(session, driver, 1045.0)
    assert driver.closes == [("ping timeout", None)]
    assert session.state is State.CLOSED
    assert driver.deadline is None


def test_late_ping_timer_does_not_stretch_the_pong_deadline() -> None:
    session, driver = make()
    session.open()
    fire(session, driver, 1026.0)  # the timer fired a second late
    assert driver.deadline == 1045.0  # due + timeout, not fired + timeout
    session2, driver2 = make()
    session2.open()
    fire(session2, driver2, 1100.0)  # the loop was blocked for long
    assert driver2.deadline == 1110.0  # the client still gets half the timeout


def test_early_timer_does_not_lose_the_deadline() -> None:
    session, driver = make()
    session.open()
    fire(session, driver, 1024.9)  # fired early (not within tolerance)
    assert driver.deadline == 1025.0  # re-armed
    fire(session, driver, 1024.9995)  # within tolerance: the ping goes out
    assert session.on_poll() == "2"


@pytest.mark.parametrize(
    ("body", "messages"),
    [(b"abc", []), (b"4ok\x1ezz", ["ok"]), (b"\xff\xfe", []), (b"", []), (b"4a\x1e\x1e4b", ["a"])],
)
def test_garbage_post_closes_with_parse_error(body: bytes, messages: list[str]) -> None:
    session, driver = make()
    session.open()
    assert session.on_poll() is None
    session.begin_post()
    with pytest.raises(BadRequest):
        session.on_post(body)
    assert driver.messages == messages
    assert driver.closes == [("parse error", None)]
    assert driver.polls == ["1"]


def test_binary_post_body_is_refused() -> None:
    session, driver = make()
    session.open()
    session.begin_post()
    with pytest.raises(BadRequest):
        session.on_post(b"\x01\x02", "application/octet-stream")
    assert driver.closes == [("transport error", "invalid content")]


def test_oversized_post_is_413_and_closes() -> None:
    session, driver = make()
    session.open()
    session.begin_post()
    with pytest.raises(PayloadTooLarge) as info:
        session.on_post(None)
    assert info.value.status == 413
    assert driver.closes == [("transport error", "payload too large")]
    session2, _ = make()
    session2.open()
    session2.begin_post()
    with pytest.raises(PayloadTooLarge):
        session2.on_post(b"4" + b"x" * 100)


def test_overlapping_post_is_refused() -> None:
    session, driver = make()
    session.open()
    session.begin_post()
    with pytest.raises(BadRequest):
        session.begin_post()
    assert driver.closes == [("transport error", "data request overlap from client")]


def test_close_packet_over_polling_answers_noop() -> None:
    session, driver = make()
    session.open()
    assert session.on_poll() is None
    session.begin_post()
    assert session.on_post(b"1") == "ok"
    assert driver.polls == ["6"]
    assert driver.closes == [("transport close", None)]


def test_ping_from_client_is_a_transport_error() -> None:
    session, driver = make("websocket")
    session.open()
    session.on_ws_message("2")
    assert driver.closes == [("transport error", "invalid heartbeat direction")]
    assert driver.ws_closed == 1


def test_websocket_messages_and_garbage() -> None:
    session, driver = make("websocket")
    session.open()
    session.on_ws_message("4hi")
    session.on_ws_message(b"\x00\x01")
    session.on_ws_message("6")  # noop from the client is ignored
    assert driver.messages == ["hi", b"\x00\x01"]
    session.on_ws_message("x")
    assert driver.closes == [("parse error", None)]
    session.on_ws_message("4late")  # after close: ignored
    assert driver.messages == ["hi", b"\x00\x01"]


def test_websocket_close_packet_and_transport_close() -> None:
    session, driver = make("websocket")
    session.open()
    session.on_ws_message("1")
    assert driver.closes == [("transport close", None)]
    session.on_ws_closed()  # already closed: on_close stays called once
    assert len(driver.closes) == 1
    s2, d2 = make("websocket")
    s2.open()
    s2.on_ws_closed("boom")
    assert d2.closes == [("transport error", "boom")]


def test_websocket_flush_coalesces_one_write_per_flush() -> None:
    session, driver = make("websocket")
    session.open()
    msgs = [OutgoingMessage(str(i)) for i in range(5)]
    for m in msgs:
        session.send([m])
    assert driver.flush_requests == 1
    session.flush()
    assert driver.ws_writes == 1
    assert driver.ws == [f"4{i}" for i in range(5)]
    assert session.queued_bytes == 0


def test_send_buffer_overflow_closes_with_transport_error() -> None:
    session, driver = make("websocket")
    session.open()
    session.send([OutgoingMessage("x" * 10)])
    assert session.buffered_bytes == 13  # frame header + "4" + data, until flushed
    driver.buffer = 5000  # what the connection holds after the write: the kernel is behind
    session.flush()
    assert driver.closes == [("transport error", "send buffer overflow")]
    assert session.queue == [] and session.buffered_bytes == 0
    session.send([OutgoingMessage("y")])  # closed: dropped silently
    assert session.queue == []


def test_polling_queue_overflow_closes_too() -> None:
    session, driver = make("polling")
    session.open()
    for _ in range(9):
        session.send([OutgoingMessage("x" * 99)])  # 100 bytes each once encoded
    assert driver.closes == [] and session.buffered_bytes == 900
    session.send([OutgoingMessage("x" * 200)])
    assert driver.closes == [("transport error", "send buffer overflow")]
    assert session.queue == [] and session.buffered_bytes == 0


def test_upgrade_probe_noop_and_switch() -> None:
    session, driver = make()
    session.open()
    assert session.on_poll() is None
    session.send([OutgoingMessage("queued")])
    session.flush()
    assert driver.polls == ["4queued"]
    assert session.on_poll() is None
    assert session.start_upgrade()
    assert session.state is State.UPGRADING
    assert driver.deadline == 1010.0  # upgrade timeout
    session.on_ws_message("2probe")
    assert driver.ws == ["3probe"]
    assert driver.polls[-1] == "6"  # the parked GET ends with a noop
    assert session.on_poll() == "6"  # a late GET during the upgrade too
    session.send([OutgoingMessage("buffered")])
    session.on_ws_message("5")
    assert session.transport == "websocket" and session.state is State.OPEN
    session.flush()
    assert driver.ws == ["3probe", "4buffered"]
    assert not session.start_upgrade()  # already upgraded
    session.on_ws_message("4after")
    assert driver.messages == ["after"]


def test_upgrade_garbage_or_wrong_packet_aborts_the_upgrade_only() -> None:
    for bad in ("4hello", "zz", "2notprobe"):
        session, driver = make()
        session.open()
        assert session.start_upgrade()
        session.on_ws_message(bad)
        assert driver.ws_closed == 1
        assert session.state is State.OPEN and session.transport == "polling"
        assert driver.closes == []
        assert session.start_upgrade()  # may try again


def test_upgrade_timeout_and_probe_socket_closing() -> None:
    session, driver = make()
    session.open()
    assert session.start_upgrade()
    fire(session, driver, 1010.0)
    assert driver.ws_closed == 1 and session.state is State.OPEN
    assert driver.deadline == 1025.0
    assert session.start_upgrade()
    session.on_ws_closed()
    assert session.state is State.OPEN and driver.closes == []


def test_upgrade_refused_for_websocket_sessions_and_closed_ones() -> None:
    session, _ = make("websocket")
    session.open()
    assert not session.start_upgrade()
    polling, _ = make(cfg=SessionConfig(upgrades=()))
    polling.open()
    assert not polling.start_upgrade()
    closed, _ = make()
    closed.open()
    closed.close()
    closed.close()
    assert not closed.start_upgrade()


def test_server_close_over_polling_waits_for_next_get() -> None:
    session, driver = make()
    session.open()
    session.send([OutgoingMessage("bye")])
    session.close("forced close")
    assert session.state is State.CLOSING
    assert driver.closes == []
    session.send([OutgoingMessage("dropped")])
    assert session.on_poll() == "4bye\x1e1"
    assert driver.closes == [("forced close", None)]


def test_server_close_over_polling_times_out() -> None:
    session, driver = make()
    session.open()
    session.close()
    fire(session, driver, 1000.0 + CFG.close_timeout)
    assert driver.closes == [("forced close", None)]


def test_close_with_parked_get_and_discard() -> None:
    session, driver = make()
    session.open()
    assert session.on_poll() is None
    session.send([OutgoingMessage("last")])
    session.close("server shutting down")
    assert driver.polls == ["4last\x1e1"]
    assert driver.closes == [("server shutting down", None)]
    s2, d2 = make()
    s2.open()
    s2.close("server shutting down", discard=True)
    assert d2.closes == [("server shutting down", None)]


def test_websocket_close_flushes_first() -> None:
    session, driver = make("websocket")
    session.open()
    session.send([OutgoingMessage("last")])
    session.close()
    assert driver.ws == ["4last"]
    assert driver.ws_closed == 1
    assert driver.closes == [("forced close", None)]


def test_close_during_upgrade_aborts_it() -> None:
    session, driver = make()
    session.open()
    assert session.start_upgrade()
    assert session.on_poll() is None
    session.close()
    assert driver.ws_closed == 1
    assert driver.polls == ["1"]
    assert driver.closes == [("forced close", None)]


def test_ping_goes_through_the_queue_on_websocket() -> None:
    session, driver = make("websocket")
    session.open()
    fire(session, driver, 1025.0)
    assert driver.flush_requests == 1
    session.flush()
    assert driver.ws == ["2"]
    session.on_ws_message("3")
    assert driver.deadline == 1050.0
