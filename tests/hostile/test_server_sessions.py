"""Findings 4 and 5 of issue 7 in one process (memory adapter), through the official client.

Finding 4: a client presenting the pid of a socket still connected takes the session over
(the pid is the secret), but the superseded connection is CLOSED so its client notices (its
events are no longer dropped silently), and the pid/offset never stay in `handshake.auth`.
Finding 5: a replay holds only what the client could have been sent: nothing to a room from
before the socket joined it, nothing from before the session itself.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import aiohttp
from e2e.conftest import ServerProcess
from e2e.jsclient import JsClient, JsDriver
from e2e.rawclient import RawClient

from . import server_fixtures

# fixtures this module uses (pytest finds them as module attributes)
js, node_driver, recovery_server = server_fixtures.js, server_fixtures.node_driver, server_fixtures.recovery_server

_unique = itertools.count(1)


def payloads(received: list[list[Any]]) -> list[list[Any]]:
    """Events without their trailing offset."""
    return [args[:-1] for args in received]


async def observer(js: JsDriver, url: str) -> JsClient:
    """A client in the "observers" room: it hears every server-side disconnect."""
    ctl = js.client("ctl")
    assert (await ctl.connect(url, transports=["websocket"], listen=["disconnected"]))["connected"]
    await ctl.call("join", "observers")
    return ctl


async def test_takeover_closes_the_superseded_connection(js: JsDriver, recovery_server: ServerProcess) -> None:
    url = recovery_server.url
    room = f"r{next(_unique)}"
    ctl = await observer(js, url)
    victim = js.client("victim")
    st = await victim.connect(url, transports=["websocket"], listen=["news"])
    sid = st["id"]
    pid = await victim.call("mypid")
    await victim.call("join", room)
    assert await victim.call("set_data", "user", "ada") is True
    async with aiohttp.ClientSession() as session:
        thief, _, reply = await RawClient.open_with_reply(session, url, {"pid": pid, "user": "x"})
        assert reply["sid"] == sid  # the newest connection presenting the pid gets the session
        # ...and the victim's official client is told: its connection is closed
        await victim.wait_for("disconnect", via="life", timeout=5)
        assert not (await victim.state())["connected"]
        # the session moved whole: rooms and data
        await thief.ws.send_str('420["get_data"]')
        assert json.loads((await thief.recv_packet())[3:]) == [{"user": "ada"}]
        assert await ctl.call("rooms_of", sid) == sorted([sid, room])
        # the pid (and offset) never stay in handshake.auth: it leaves the process from there
        await thief.ws.send_str('421["whoami"]')
        me = json.loads((await thief.recv_packet())[3:])[0]
        assert me["auth"] == {"user": "x"}, me
        # the victim takes its session back the same way (its client sends pid and offset)
        st2 = await victim.reconnect()
        assert st2["connected"] and st2["recovered"] is True and st2["id"] == sid, st2
        closed = await thief.ws.receive(timeout=5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING), closed
        await ctl.call("to", [room], [], "news", ["back"])
        got = await victim.wait_for("news")
        assert payloads(got) == [["back"]]
        me = await victim.call("whoami")
        assert "pid" not in me["auth"] and "offset" not in me["auth"], me
        await thief.ws.close()


async def test_no_replay_of_a_room_from_before_the_join(js: JsDriver, recovery_server: ServerProcess) -> None:
    """The official client's own (legitimate) offset predates its join of R: socket.io and the
    old code replayed R's packets sent before the join."""
    url = recovery_server.url
    room = f"r{next(_unique)}"
    ctl = await observer(js, url)
    c = js.client()
    sid = (await c.connect(url, transports=["websocket"], listen=["news"]))["id"]
    await ctl.call("to", [sid], [], "news", ["first"])  # gives the client an offset
    await c.wait_for("news")
    await ctl.call("to", [room], [], "news", ["before-join"])  # c is not in R: never sent to c
    await c.call("join", room)
    await c.close_engine()
    await ctl.wait_until(lambda: any(a[0]["id"] == sid for a in ctl.received("disconnected")))
    await ctl.call("to", [room], [], "news", ["missed"])
    st = await c.reconnect()
    assert st["recovered"] is True and st["id"] == sid, st
    await ctl.call("to", [sid], [], "news", ["after"])
    got = await c.wait_for("news", count=3)
    assert payloads(got) == [["first"], ["missed"], ["after"]]


async def test_offset_older_than_the_session_is_clamped(js: JsDriver, recovery_server: ServerProcess) -> None:
    """A client naming offset "0" gets nothing from before its session started (old code:
    every broadcast still in the log, i.e. up to a minute of other people's traffic)."""
    url = recovery_server.url
    ctl = await observer(js, url)
    marker = f"m{next(_unique)}"
    await ctl.call("everyone", "news", [f"{marker}-before-session"])
    c = js.client()
    sid = (await c.connect(url, transports=["websocket"]))["id"]
    pid = await c.call("mypid")
    await c.close_engine()
    await ctl.wait_until(lambda: any(a[0]["id"] == sid for a in ctl.received("disconnected")))
    await ctl.call("everyone", "news", [f"{marker}-missed"])
    async with aiohttp.ClientSession() as session:
        raw, _, reply = await RawClient.open_with_reply(session, url, {"pid": pid, "offset": "0"})
        assert reply["sid"] == sid, reply
        await ctl.call("to", [sid], [], "news", [f"{marker}-after"])
        replayed: list[list[Any]] = []
        while not replayed or replayed[-1][1] != f"{marker}-after":
            packet = await raw.recv_packet()
            assert packet.startswith("42"), packet
            replayed.append(json.loads(packet[2:])[:-1])
        mine = [p for p in replayed if str(p[1]).startswith(marker)]
        assert mine == [["news", f"{marker}-missed"], ["news", f"{marker}-after"]], replayed
        await raw.ws.close()
