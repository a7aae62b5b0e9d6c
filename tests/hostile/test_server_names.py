"""Finding 1/2/7 of issue 7, server side: names a client sends are bounded and checked.

Real `siopg serve` processes; the raw client speaks the wire protocol by hand to send what the
official client would never send. What it checks:
  * the chat example refuses a room Postgres cannot store ("\\u0000") with an error ack, and
    keeps serving everyone (the original exploit: 42["join","\\u0000"]);
  * a CONNECT to an over-long namespace gets CONNECT_ERROR "Invalid namespace" even where a
    dynamic parent would match it (no child is made);
  * an EVENT with an invalid event name closes that connection ("parse error"), nobody else's;
  * dynamic namespaces are bounded by `max_dynamic_namespaces` (default 1000).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import pytest
from e2e.conftest import ServerProcess
from e2e.jsclient import JsDriver
from e2e.rawclient import RawClient

from . import server_fixtures
from .server_fixtures import ROOT, serve

# fixtures this module uses (pytest finds them as module attributes)
js, node_driver, recovery_server = server_fixtures.js, server_fixtures.node_driver, server_fixtures.recovery_server


@pytest.fixture(scope="module")
def chat_server() -> Iterator[ServerProcess]:
    yield from serve(ROOT / "examples" / "chat.py")


async def ws_open(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """An Engine.IO WebSocket connection, past its open packet (no namespace joined yet)."""
    ws = await session.ws_connect(url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket")
    opening = await ws.receive(timeout=5)
    assert opening.type == aiohttp.WSMsgType.TEXT and opening.data.startswith("0"), opening
    return ws


async def ack_of(raw: RawClient, ack_id: int) -> object:
    """The arguments of the ACK with `ack_id` ("43<id>[...]"), skipping other packets."""
    prefix = f"43{ack_id}["
    while not (packet := await raw.recv_packet()).startswith(prefix):
        assert packet.startswith("42"), packet  # only broadcasts may come in between
    return json.loads(packet[len(prefix) - 1 :])


async def test_chat_example_refuses_a_nul_room_and_keeps_serving(js: JsDriver, chat_server: ServerProcess) -> None:
    victim = js.client()
    assert (await victim.connect(chat_server.url, transports=["websocket"], listen=["message"]))["connected"]
    assert await victim.call("join", "lobby") == ["lobby"]
    async with aiohttp.ClientSession() as session:
        raw, _, _ = await RawClient.open(session, chat_server.url)
        await raw.ws.send_str('420["join","\\u0000"]')
        assert await ack_of(raw, 0) == [{"error": "invalid room name"}]
        await raw.ws.send_str('421["join","\\ud800"]')  # a lone surrogate: not storable either
        assert await ack_of(raw, 1) == [{"error": "invalid room name"}]
        await raw.ws.send_str('422["join","' + "r" * 300 + '"]')
        assert await ack_of(raw, 2) == [{"error": "invalid room name"}]
        # the same connection goes on working, and so does everyone else's
        await raw.ws.send_str('423["join","lobby"]')
        assert await ack_of(raw, 3) == [["lobby"]]
        await raw.ws.send_str('424["say","lobby","hello"]')
        assert await ack_of(raw, 4) == [{"ok": True}]
        got = await victim.wait_for("message")
        assert got[0][0]["text"] == "hello", got
        await raw.ws.close()


async def test_over_long_namespace_gets_invalid_namespace(recovery_server: ServerProcess) -> None:
    """`^/dyn-\\d+$` matches a 6000-digit name: the name is refused before the matcher runs."""
    long_name = "/dyn-" + "1" * 6000
    async with aiohttp.ClientSession() as session:
        ws = await ws_open(session, recovery_server.url)
        await ws.send_str(f"40{long_name},")
        reply = await ws.receive(timeout=5)
        assert reply.type == aiohttp.WSMsgType.TEXT
        assert reply.data == f'44{long_name},{{"message":"Invalid namespace"}}', reply.data[:200]
        # a name that passes the checks is still served on the same connection
        await ws.send_str("40/dyn-7,")
        reply = await ws.receive(timeout=5)
        assert reply.data.startswith("40/dyn-7,{"), reply.data
        await ws.close()


async def test_invalid_event_name_closes_only_that_connection(js: JsDriver, recovery_server: ServerProcess) -> None:
    bystander = js.client()
    assert (await bystander.connect(recovery_server.url, transports=["websocket"]))["connected"]
    async with aiohttp.ClientSession() as session:
        for bad in ("e" * 300, "a\\u0000b", "\\udc00"):
            raw, _, _ = await RawClient.open(session, recovery_server.url)
            await raw.ws.send_str(f'42["{bad}",1]')
            msg = await raw.ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING), (bad[:20], msg)
            await raw.ws.close()
    assert await bystander.emit_ack("echo", "still here") == ["still here"]
