"""Connection state recovery seen from the official client (in-memory adapter).

A client drops with `socket.io.engine.close()` (what a network cut looks like), the server keeps
emitting to it and its rooms, then the client reconnects with its pid and last offset.
With recovery on, each event carries its offset as a trailing string argument (that is how
socket.io 4 does it, and the JS client hands it to listeners too), so payloads are compared
without that last argument.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp
import pytest

from .conftest import ServerProcess, node_bug
from .jsclient import JsClient, JsDriver
from .rawclient import RawClient

_unique = itertools.count(1)


@pytest.fixture(scope="module")
def server(start_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    return start_server("recovery")


@pytest.fixture(scope="module")
def short_server(start_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    return start_server("recovery_short")


def payloads(received: list[list[Any]]) -> list[list[Any]]:
    """Drop the trailing offset from each event, checking it is there."""
    for args in received:
        assert args and isinstance(args[-1], str), f"no offset on {args!r}"
    return [args[:-1] for args in received]


async def observer(js: JsDriver, url: str, **opts: Any) -> JsClient:
    """A client in the "observers" room: it hears every server-side disconnect and drives emits."""
    ctl = js.client("ctl")
    assert (await ctl.connect(url, **opts))["connected"]
    await ctl.on("disconnected")
    await ctl.call("join", "observers")
    return ctl


async def dropped(ctl: JsClient, c: JsClient, sid: str) -> str:
    """Cut c's connection and wait until the server has noticed; returns the server's reason."""
    await c.close_engine()
    found = None

    def seen() -> bool:
        nonlocal found
        found = next((a[0] for a in ctl.received("disconnected") if a[0]["id"] == sid), None)
        return found is not None

    await ctl.wait_until(seen)
    assert found is not None
    return found["reason"]


@pytest.mark.parametrize(
    ("app", "opts"),
    [
        ("recovery", {"transports": ["websocket"]}),
        ("recovery", {"transports": ["polling"]}),
        ("recovery", {"transports": ["polling", "websocket"]}),
        ("recovery_msgpack", {"transports": ["websocket"], "parser": "msgpack"}),
        ("recovery_msgpack", {"transports": ["polling"], "parser": "msgpack"}),
    ],
    ids=["websocket", "polling", "upgrade", "msgpack-websocket", "msgpack-polling"],
)
async def test_recovers_id_rooms_and_missed_events(js: JsDriver, start_server, app: str, opts: dict) -> None:  # type: ignore[no-untyped-def]
    server = start_server(app)
    room, other = f"r{next(_unique)}", f"o{next(_unique)}"
    ctl = await observer(js, server.url, **opts)
    c = js.client()
    st = await c.connect(server.url, **opts)
    assert st["connected"] and st["recovered"] is False
    sid = st["id"]
    await c.on("news")
    await c.call("join", room)
    await ctl.call("to", [room], [], "news", ["before"])
    await c.wait_for("news")

    assert await dropped(ctl, c, sid) == "transport close"
    await ctl.call("to", [sid], [], "news", ["to-id", {"n": 1}])
    await ctl.call("to", [room], [], "news", ["to-room", b"\x00bin"])
    await ctl.call("to", [other], [], "news", ["not-for-c"])
    await ctl.call("to", [room], [sid], "news", ["excepted"])
    await ctl.call("everyone", "news", ["everyone"])
    for i in range(20):
        await ctl.call("to", [room], [], "news", [i])

    st = await c.reconnect()
    assert st["connected"] and st["recovered"] is True and st["id"] == sid, st
    expected = [["before"], ["to-id", {"n": 1}], ["to-room", b"\x00bin"], ["everyone"], *[[i] for i in range(20)]]
    await c.wait_for("news", count=len(expected))
    # nothing more than that: a marker sent now arrives right after
    await ctl.call("to", [sid], [], "news", ["after"])
    await c.wait_for("news", count=len(expected) + 1)
    assert payloads(c.received("news")) == [*expected, ["after"]]
    offsets = [a[-1] for a in c.received("news")]
    assert len(set(offsets)) == len(offsets)

    assert await ctl.call("rooms_of", sid) == sorted([sid, room])
    me = await c.call("whoami")
    assert me["id"] == sid and me["recovered"] is True


@node_bug("no recovery before the first event (socket.io#4888)")
async def test_recovers_when_no_event_was_received_before_the_drop(js: JsDriver, server: ServerProcess) -> None:
    room = f"r{next(_unique)}"
    ctl = await observer(js, server.url)
    c = js.client()
    sid = (await c.connect(server.url, transports=["websocket"]))["id"]
    await c.on("news")
    await c.call("join", room)
    await dropped(ctl, c, sid)
    await ctl.call("to", [room], [], "news", ["missed-1"])
    await ctl.call("to", [sid], [], "news", ["missed-2"])
    st = await c.reconnect()
    assert st["recovered"] is True and st["id"] == sid, st
    await c.wait_for("news", count=2)
    await ctl.call("to", [sid], [], "news", ["after"])
    await c.wait_for("news", count=3)
    assert payloads(c.received("news")) == [["missed-1"], ["missed-2"], ["after"]]
    assert await ctl.call("rooms_of", sid) == sorted([sid, room])


async def test_recovers_twice_in_a_row(js: JsDriver, server: ServerProcess) -> None:
    ctl = await observer(js, server.url)
    c = js.client()
    sid = (await c.connect(server.url, transports=["websocket"]))["id"]
    await c.on("news")
    await ctl.call("to", [sid], [], "news", [0])
    await c.wait_for("news")
    for round_ in (1, 2):
        ctl.events.clear()
        await dropped(ctl, c, sid)
        await ctl.call("to", [sid], [], "news", [round_])
        st = await c.reconnect()
        assert st["recovered"] is True and st["id"] == sid
        await c.wait_for("news", count=round_ + 1)
    await ctl.call("to", [sid], [], "news", ["end"])
    await c.wait_for("news", count=4)
    assert payloads(c.received("news")) == [[0], [1], [2], ["end"]]


async def test_expired_session_gets_a_fresh_start(js: JsDriver, short_server: ServerProcess) -> None:
    ctl = await observer(js, short_server.url)
    c = js.client()
    sid = (await c.connect(short_server.url, transports=["websocket"]))["id"]
    await c.on("news")
    await c.call("join", "expiring-room")
    await ctl.call("to", [sid], [], "news", ["before"])
    await c.wait_for("news")
    await dropped(ctl, c, sid)
    await ctl.call("to", [sid], [], "news", ["lost"])
    await asyncio.sleep(1.0)  # the window is 0.3 s
    st = await c.reconnect()
    assert st["connected"] and st["recovered"] is False and st["id"] != sid, st
    assert await c.call("rooms") == [st["id"]]
    await ctl.call("to", [st["id"]], [], "news", ["fresh"])
    await c.wait_for("news", count=2)
    assert payloads(c.received("news")) == [["before"], ["fresh"]]


async def test_server_side_disconnect_is_not_recoverable(js: JsDriver, server: ServerProcess) -> None:
    ctl = await observer(js, server.url)
    c = js.client()
    sid = (await c.connect(server.url, transports=["websocket"]))["id"]
    await c.on("news")
    await ctl.call("to", [sid], [], "news", ["before"])
    await c.wait_for("news")
    assert await c.call("kick") is True
    assert await c.wait_for("disconnect", via="life") == [["io server disconnect", None]]
    st = await c.reconnect()
    assert st["connected"] and st["recovered"] is False and st["id"] != sid


async def test_client_side_disconnect_is_not_recoverable(js: JsDriver, server: ServerProcess) -> None:
    ctl = await observer(js, server.url)
    c = js.client()
    sid = (await c.connect(server.url, transports=["websocket"]))["id"]
    await c.on("news")
    await ctl.call("to", [sid], [], "news", ["before"])
    await c.wait_for("news")
    await c.disconnect()
    await ctl.wait_until(lambda: any(a[0]["id"] == sid for a in ctl.received("disconnected")))
    assert [a[0]["reason"] for a in ctl.received("disconnected") if a[0]["id"] == sid] == ["client namespace disconnect"]
    st = await c.reconnect()
    assert st["connected"] and st["recovered"] is False and st["id"] != sid


async def test_unknown_pid_gets_a_fresh_session(js: JsDriver, server: ServerProcess) -> None:
    """A forged pid/offset in the CONNECT auth is ignored, not an error."""
    c = js.client()
    st = await c.connect(server.url, auth={"pid": "forged-pid", "offset": "123-456"})
    assert st["connected"] and st["recovered"] is False, st


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_automatic_reconnection_misses_nothing(js: JsDriver, server: ServerProcess, transports: list[str]) -> None:
    """The client's own reconnection loop, while the server keeps emitting: every tick arrives
    exactly once and in order, whether live, replayed, or emitted while the server had not yet
    noticed the drop."""
    ctl = await observer(js, server.url)
    c = js.client()
    st = await c.connect(
        server.url, transports=transports, reconnection=True, reconnectionDelay=50,
        reconnectionDelayMax=50, randomizationFactor=0,
    )
    sid = st["id"]
    await c.on("tick")
    n = 0

    async def tick(count: int) -> None:
        nonlocal n
        for _ in range(count):
            await ctl.call("to", [sid], [], "tick", [n])
            n += 1

    await tick(3)
    await c.wait_for("tick", count=3)
    for round_ in (1, 2):
        await c.close_engine()
        await tick(15)
        await c.wait_until(lambda: len(c.received("connect", via="life")) > round_, timeout=8)  # noqa: B023
        connects = c.received("connect", via="life")
        assert connects[-1][0]["id"] == sid and connects[-1][0]["recovered"] is True, connects
    await tick(3)
    await c.wait_for("tick", count=n, timeout=8)
    await asyncio.sleep(0.2)
    assert payloads(c.received("tick")) == [[i] for i in range(n)]
    assert all(a[0]["recovered"] for a in c.received("connect", via="life")[1:])


async def test_direct_emits_carry_offsets_and_are_not_replayed(js: JsDriver, server: ServerProcess) -> None:
    """`socket.emit` (not only broadcasts) carries an offset when recovery is on; the client's
    last offset then comes from it, so a replay starts right after it."""
    ctl = await observer(js, server.url)
    c = js.client()
    sid = (await c.connect(server.url, transports=["websocket"]))["id"]
    await c.on("echo", "news")
    await c.emit("echo", "direct-1")
    await c.emit("echo", "direct-2")
    got = await c.wait_for("echo", count=2)
    assert payloads(got) == [["direct-1"], ["direct-2"]]
    await dropped(ctl, c, sid)
    await ctl.call("to", [sid], [], "news", ["missed"])
    st = await c.reconnect()
    assert st["recovered"] is True, st
    await c.wait_for("news")
    await c.emit("echo", "direct-3")
    await c.wait_for("echo", count=3)
    assert payloads(c.received("echo")) == [["direct-1"], ["direct-2"], ["direct-3"]]
    assert payloads(c.received("news")) == [["missed"]]


async def test_multiplexed_namespaces_recover_independently(js: JsDriver, server: ServerProcess) -> None:
    """"/" and "/chat" over one connection: one drop, each namespace gets its own session back."""
    ctl_main = await observer(js, server.url)
    ctl_chat = await observer(js, server.url + "/chat")
    main, chat = js.client(), js.client()
    st_main = await main.connect(server.url, transports=["websocket"])
    st_chat = await chat.connect(server.url + "/chat", share=main)
    assert st_chat["engineId"] == st_main["engineId"]
    for c, ctl, st in ((main, ctl_main, st_main), (chat, ctl_chat, st_chat)):
        await c.on("news")
        await ctl.call("to", [st["id"]], [], "news", ["before"])
        await c.wait_for("news")
    await main.close_engine()
    await ctl_main.wait_until(lambda: any(a[0]["id"] == st_main["id"] for a in ctl_main.received("disconnected")))
    await ctl_chat.wait_until(lambda: any(a[0]["id"] == st_chat["id"] for a in ctl_chat.received("disconnected")))
    await ctl_main.call("to", [st_main["id"]], [], "news", ["missed-main"])
    await ctl_chat.call("to", [st_chat["id"]], [], "news", ["missed-chat"])
    again_main = await main.reconnect()
    # the shared Manager reopened: "/chat" reconnects by itself on the new engine connection
    again_chat = (await chat.wait_for("connect", count=2, via="life"))[1][0]
    assert again_main["recovered"] and again_main["id"] == st_main["id"], again_main
    assert again_chat["recovered"] and again_chat["id"] == st_chat["id"], again_chat
    assert again_chat["engineId"] == again_main["engineId"] != st_main["engineId"]
    await main.wait_for("news", count=2)
    await chat.wait_for("news", count=2)
    assert payloads(main.received("news")) == [["before"], ["missed-main"]]
    assert payloads(chat.received("news")) == [["before"], ["missed-chat"]]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_many_missed_events_and_socket_data(js: JsDriver, server: ServerProcess, transports: list[str]) -> None:
    """Hundreds of missed room broadcasts replay in order; socket.data comes back too."""
    room = f"r{next(_unique)}"
    ctl = await observer(js, server.url)
    c = js.client()
    sid = (await c.connect(server.url, transports=transports, listen=["tick", "news"]))["id"]
    await c.call("join", room)
    assert await c.call("set_data", "user", {"name": "ada", "bin": b"\x01"}) is True
    await ctl.call("to", [sid], [], "news", ["before"])
    await c.wait_for("news")
    await dropped(ctl, c, sid)
    assert await ctl.call("burst", [room], "tick", 300) == 300
    st = await c.reconnect()
    assert st["recovered"] is True and st["id"] == sid, st
    got = await c.wait_for("tick", count=300, timeout=10)
    assert [a[0] for a in payloads(got)] == list(range(300))
    assert payloads(got)[299] == [299, {"i": 299, "bin": bytes([299 % 256])}]
    assert await c.call("get_data") == {"user": {"name": "ada", "bin": b"\x01"}}


async def test_recovers_after_a_silent_network_cut(js: JsDriver, server: ServerProcess) -> None:
    """The common real case: the network dies without a close, the server notices by ping
    timeout, and the client resumes on a new connection with {pid, offset} in its CONNECT."""
    room = f"r{next(_unique)}"
    ctl = await observer(js, server.url)
    async with aiohttp.ClientSession() as session:
        a, _, reply = await RawClient.open_with_reply(session, server.url)
        sid, pid = reply["sid"], reply["pid"]
        await a.ws.send_str(f'420["join","{room}"]')
        assert json.loads((await a.recv_packet())[3:]) == [sorted([sid, room])]
        await ctl.call("to", [room], [], "news", ["before"])
        packet = await a.recv_packet()
        assert packet.startswith('42["news","before",'), packet
        offset = json.loads(packet[2:])[-1]
        # a goes silent: no pong, no close
        reason = None

        def seen() -> bool:
            nonlocal reason
            reason = next((x[0]["reason"] for x in ctl.received("disconnected") if x[0]["id"] == sid), None)
            return reason is not None

        await ctl.wait_until(seen, timeout=8)
        assert reason == "ping timeout"
        await ctl.call("to", [room], [], "news", ["missed"])
        b, _, reply_b = await RawClient.open_with_reply(session, server.url, {"pid": pid, "offset": offset})
        assert reply_b["sid"] == sid, reply_b
        packet = await b.recv_packet()
        assert packet.startswith('42["news","missed",'), packet
        assert await ctl.call("rooms_of", sid) == sorted([sid, room])
        await a.ws.close()
        await b.ws.close()


async def test_resume_while_the_old_connection_still_looks_alive(js: JsDriver, server: ServerProcess) -> None:
    """socket.io#4880: the client reconnects (B) before the server noticed its old connection (A)
    died. Whatever B gets (socket.io: a fresh session), A's ping timeout later must not hurt B,
    and B's own session must still be recoverable afterwards."""
    room = f"r{next(_unique)}"
    ctl = await observer(js, server.url)
    async with aiohttp.ClientSession() as session:
        a, _, reply_a = await RawClient.open_with_reply(session, server.url)
        await a.ws.send_str(f'420["join","{room}"]')
        await a.recv_packet()
        await ctl.call("to", [reply_a["sid"]], [], "news", ["for-a"])
        offset_a = json.loads((await a.recv_packet())[2:])[-1]
        # A goes silent; B resumes right away, while A still counts as connected
        b, _, reply_b = await RawClient.open_with_reply(session, server.url, {"pid": reply_a["pid"], "offset": offset_a})
        b_sid = reply_b["sid"]
        await b.ws.send_str(f'420["join","{room}"]')
        assert json.loads((await b.recv_packet())[3:])[0] == sorted({b_sid, room})
        # outlive A's ping timeout (interval 1 s + timeout 2 s), keeping B alive
        loop = asyncio.get_running_loop()
        end = loop.time() + 4.0
        while loop.time() < end:
            try:
                msg = await asyncio.wait_for(b.ws.receive(), end - loop.time())
            except TimeoutError:
                break
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            if msg.data == "2":
                await b.ws.send_str("3")
        assert not [x for x in ctl.received("disconnected") if x[0]["id"] == b_sid and b_sid != reply_a["sid"]]
        # B is intact: room broadcasts reach it, its rooms are right
        await ctl.call("to", [room], [], "news", ["for-b"])
        packet = await b.recv_packet()
        assert packet.startswith('42["news","for-b",'), packet
        offset_b = json.loads(packet[2:])[-1]
        assert await ctl.call("rooms_of", b_sid) == sorted({b_sid, room})
        # and B's session can itself be resumed after B drops
        await b.ws.close()
        await ctl.wait_until(lambda: any(x[0]["id"] == b_sid and x[0]["reason"] == "transport close"
                                         for x in ctl.received("disconnected")))
        await ctl.call("to", [room], [], "news", ["missed-by-b"])
        c, _, reply_c = await RawClient.open_with_reply(session, server.url, {"pid": reply_b["pid"], "offset": offset_b})
        assert reply_c["sid"] == b_sid, reply_c
        packet = await c.recv_packet()
        assert packet.startswith('42["news","missed-by-b",'), packet
        await a.ws.close()
        await c.ws.close()
