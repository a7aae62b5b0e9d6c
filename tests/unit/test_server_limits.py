"""Names and dynamic namespaces are bounded (issue 7): siopg.names, the Server options, what
app code and clients see, the metrics, the takeover, and the clipped logs."""

from __future__ import annotations

import logging
import re

import pytest

import siopg
from siopg._log import clip
from siopg.metrics import render
from siopg.names import RESERVED_EVENTS, check_event_name, check_name, is_valid_name
from siopg.parser import PacketType
from siopg.server.options import RESERVED_EVENTS as SERVER_RESERVED
from siopg.server.testing import FakeClient

from .helpers import settle


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("\x00", "NUL"),
        ("a\x00b", "NUL"),
        ("\ud800", "lone surrogate"),
        ("x" * 257, "257 bytes"),
        ("é" * 129, "258 bytes"),
        (5, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_check_name_refuses_with_a_clear_message(value: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_name(value, "room")
    assert not is_valid_name(value)


def test_check_name_accepts_up_to_the_limit() -> None:
    assert check_name("x" * 256) == "x" * 256
    assert check_name("é" * 128) == "é" * 128  # 256 bytes
    assert check_name("") == ""
    assert check_name("abc", max_bytes=3) == "abc"
    with pytest.raises(ValueError):
        check_name("abcd", max_bytes=3)
    assert check_event_name(7) == 7  # numbers are event names in the protocol
    with pytest.raises(ValueError):
        check_event_name(True)


def test_one_public_reserved_events_list() -> None:
    import importlib

    import siopg.parser.packet

    emitter = importlib.import_module(siopg.Emitter.__module__)  # the way that loads today
    assert SERVER_RESERVED is RESERVED_EVENTS
    assert siopg.parser.packet.RESERVED_EVENTS is RESERVED_EVENTS
    assert emitter.RESERVED_EVENTS is RESERVED_EVENTS
    assert {"connect", "disconnect", "disconnecting", "newListener"} <= RESERVED_EVENTS


def test_sql_emit_refuses_the_same_reserved_events() -> None:
    """The SQL emit function (migration 0002) spells the list out: it must match."""
    from importlib import resources

    sql = (resources.files("siopg.adapter.postgres") / "sql" / "0002_hostile_limits.sql").read_text()
    listed = re.search(r"\(args ->> 0\) IN \(([^)]*)\)", sql)
    assert listed is not None
    assert set(re.findall(r"'([^']*)'", listed.group(1))) == RESERVED_EVENTS


def test_clip() -> None:
    assert clip("abc") == "abc"
    long = clip("x" * 700_000)
    assert len(long) < 240 and long.endswith("...(+699800 chars)")


@pytest.mark.parametrize("option", ["max_namespace_length", "max_room_length", "max_event_name_length", "max_dynamic_namespaces"])
def test_options_must_be_positive_integers(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        siopg.Server(**{option: 0})


async def test_app_code_gets_value_error_for_invalid_rooms_and_events(io: siopg.Server) -> None:
    sockets: list[siopg.Socket] = []
    io.on("connection", sockets.append)
    client = FakeClient(io)
    await client.connected()
    socket = sockets[0]
    for bad in ("\x00", "r" * 257, "\udc00"):
        with pytest.raises(ValueError):
            socket.join(bad)
        with pytest.raises(ValueError):
            socket.join(["ok", bad])
        with pytest.raises(ValueError):
            socket.leave(bad)
        with pytest.raises(ValueError):
            io.to(bad)
        with pytest.raises(ValueError):
            io.in_(["ok", bad])
        with pytest.raises(ValueError):
            io.except_(bad)
        with pytest.raises(ValueError):
            socket.to(bad)
        with pytest.raises(ValueError):
            io.sockets_join(bad)
        with pytest.raises(ValueError):
            io.emit(bad)
        with pytest.raises(ValueError):
            socket.emit(bad)
        with pytest.raises(ValueError):
            io.server_side_emit(bad)
    assert socket.rooms == {socket.id}  # nothing half-joined
    with pytest.raises(ValueError):
        io.of("/" + "n" * 300)
    small = siopg.Server(max_room_length=4, max_event_name_length=4)
    try:
        small.to("abcd").emit("abcd")
        with pytest.raises(ValueError):
            small.to("abcde")
        with pytest.raises(ValueError):
            small.emit("abcde")
    finally:
        await small.close()


async def test_invalid_namespace_refused_before_the_matcher_runs(io: siopg.Server) -> None:
    asked: list[str] = []

    def matcher(name: str, auth: dict) -> bool:
        asked.append(name)
        return True

    io.of(matcher)
    client = FakeClient(io)
    for name in ("/" + "d" * 300, "/a\x00b", "/\ud800"):
        client.connect(name)
        packet = await client.wait_for(lambda p, name=name: p.nsp == name)
        assert packet.type == PacketType.CONNECT_ERROR and packet.data == {"message": "Invalid namespace"}
    assert asked == [] and io.dynamic_namespace_count() == 0
    assert io.metrics.invalid_names == 3
    assert (await client.connected("/fine"))["sid"]
    assert asked == ["/fine"]


async def test_invalid_event_name_from_a_client_closes_with_parse_error(io: siopg.Server) -> None:
    reasons: list[str] = []
    io.on("connection", lambda s: s.on("disconnect", reasons.append))
    good, bad = FakeClient(io), FakeClient(io)
    await good.connected()
    await bad.connected()
    bad.emit("e" * 257)
    await settle()
    assert reasons == ["parse error"] and bad.conn.closed_with == "parse error"
    assert good.conn.closed_with is None
    assert io.metrics.invalid_names == 1


async def test_dynamic_namespaces_are_bounded_and_empty_ones_make_room() -> None:
    io = siopg.Server(max_dynamic_namespaces=3)
    try:
        io.of(re.compile(r"^/dyn-\d+$"))
        client = FakeClient(io)
        for i in range(3):
            await client.connected(f"/dyn-{i}")
        client.connect("/dyn-3")
        packet = await client.wait_for(lambda p: p.nsp == "/dyn-3")
        assert packet.type == PacketType.CONNECT_ERROR and "Too many namespaces" in packet.data["message"]
        assert io.dynamic_namespace_count() == 3 and "/dyn-3" not in io.namespaces
        assert io.metrics.dynamic_namespaces_refused == 1
        body = render(io.metrics_registry)[0].decode()
        assert "siopg_dynamic_namespaces 3.0" in body and "siopg_dynamic_namespaces_refused_total 1.0" in body
        io.of("/static")  # static namespaces do not count
        # one child empties: it is forgotten when a new name needs the room
        io.namespaces["/dyn-0"].sockets[next(iter(io.namespaces["/dyn-0"].sockets))].disconnect()
        await client.connected("/dyn-4")
        assert "/dyn-0" not in io.namespaces and "/dyn-4" in io.namespaces
        assert io.dynamic_namespace_count() == 3
    finally:
        await io.close()


async def test_pid_and_offset_never_stay_in_handshake_auth() -> None:
    io = siopg.Server(connection_state_recovery=siopg.Recovery())
    try:
        sockets: list[siopg.Socket] = []
        io.on("connection", sockets.append)
        first = FakeClient(io)
        reply = await first.connected("/", {"token": "t"})
        first.conn.drop("transport close")
        await settle()
        second = FakeClient(io)
        again = await second.connected("/", {"token": "t", "pid": reply["pid"], "offset": "0"})
        assert again["sid"] == reply["sid"] and sockets[1].recovered
        for socket in sockets:
            assert socket.handshake.auth == {"token": "t"}
            assert socket.describe()["handshake"]["auth"] == {"token": "t"}
    finally:
        await io.close()


async def test_client_names_are_clipped_in_error_logs(io: siopg.Server, caplog: pytest.LogCaptureFixture) -> None:
    def failing(name: str, auth: dict) -> bool:
        raise RuntimeError("matcher bug")

    io.of(failing)
    client = FakeClient(io)
    name = "/" + "q" * 250  # valid (251 bytes), still too long for a log line
    caplog.set_level(logging.ERROR, logger="siopg.server")
    client.connect(name)
    await client.wait_for(lambda p: p.nsp == name)
    assert any("matcher failed" in r.getMessage() for r in caplog.records)
    assert all(name not in r.getMessage() for r in caplog.records)
