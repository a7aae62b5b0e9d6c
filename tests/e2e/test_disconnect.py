"""Disconnect reasons, as the server's "disconnect" handler and the client see them."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from .conftest import ServerProcess, node_bug
from .jsclient import JsClient, JsDriver
from .rawclient import RawClient


@pytest.fixture(scope="module")
def server(start_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    return start_server("basic")


async def observer(js: JsDriver, url: str) -> JsClient:
    ctl = js.client("ctl")
    assert (await ctl.connect(url))["connected"]
    await ctl.on("disconnected")
    await ctl.call("join", "observers")
    return ctl


async def server_reason(ctl: JsClient, sid: str) -> str:
    """Wait for the server to report `sid`'s disconnect; returns the reason it gave."""

    def reasons() -> list[str]:
        return [a[0]["reason"] for a in ctl.received("disconnected") if a[0]["id"] == sid]

    await ctl.wait_until(lambda: bool(reasons()), timeout=8)
    await asyncio.sleep(0.05)
    assert len(reasons()) == 1, reasons()
    return reasons()[0]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_client_disconnect(js: JsDriver, server: ServerProcess, transports: list[str]) -> None:
    ctl = await observer(js, server.url)
    c = js.client()
    sid = (await c.connect(server.url, transports=transports))["id"]
    await c.disconnect()
    assert await server_reason(ctl, sid) == "client namespace disconnect"


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_transport_close(js: JsDriver, server: ServerProcess, transports: list[str]) -> None:
    ctl = await observer(js, server.url)
    c = js.client()
    sid = (await c.connect(server.url, transports=transports))["id"]
    await c.close_engine()
    assert await server_reason(ctl, sid) == "transport close"


async def test_server_namespace_disconnect(js: JsDriver, server: ServerProcess) -> None:
    ctl = await observer(js, server.url)
    c = js.client()
    sid = (await c.connect(server.url))["id"]
    assert await c.call("kick") is True
    assert await server_reason(ctl, sid) == "server namespace disconnect"
    assert await c.wait_for("disconnect", via="life") == [["io server disconnect", None]]


async def test_server_disconnect_with_close_ends_the_whole_connection(js: JsDriver, server: ServerProcess) -> None:
    """socket.disconnect(close=True): socket.io disconnects every namespace of that connection
    (each with its own DISCONNECT packet), then closes it."""
    ctl_main = await observer(js, server.url)
    ctl_chat = await observer(js, server.url + "/chat")
    main, chat = js.client(), js.client()
    main_id = (await main.connect(server.url))["id"]
    chat_id = (await chat.connect(server.url + "/chat", share=main))["id"]
    assert await main.call("kick", True) is True
    assert await server_reason(ctl_main, main_id) == "server namespace disconnect"
    assert await server_reason(ctl_chat, chat_id) == "server namespace disconnect"
    assert await main.wait_for("disconnect", via="life") == [["io server disconnect", None]]
    assert await chat.wait_for("disconnect", via="life") == [["io server disconnect", None]]


async def test_ping_timeout(js: JsDriver, server: ServerProcess) -> None:
    """A client that never answers pings is dropped with "ping timeout" after interval + timeout."""
    ctl = await observer(js, server.url)
    async with aiohttp.ClientSession() as session:
        raw, handshake, sid = await RawClient.open(session, server.url)
        assert handshake["pingInterval"] == 1000 and handshake["pingTimeout"] == 2000
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await server_reason(ctl, sid) == "ping timeout"
        assert 2.5 < loop.time() - t0 < 6
        await raw.ws.close()


async def test_answered_pings_keep_the_connection(js: JsDriver, server: ServerProcess) -> None:
    """The opposite: a client that answers pings stays connected past interval + timeout."""
    ctl = await observer(js, server.url)
    async with aiohttp.ClientSession() as session:
        raw, _, sid = await RawClient.open(session, server.url)
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.5
        pings = 0
        while loop.time() < end:
            try:
                msg = await asyncio.wait_for(raw.ws.receive(), end - loop.time())
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "2":
                pings += 1
                await raw.ws.send_str("3")
        assert pings >= 2
        assert not [a for a in ctl.received("disconnected") if a[0]["id"] == sid]
        await raw.ws.send_str('42["echo","still here"]')
        assert await raw.recv() == '42["echo","still here"]'
        await raw.ws.close()


GARBAGE: dict[str, list[str | bytes]] = {
    "truncated-json": ['42["echo"'],
    "bad-type": ["4{}"],
    "event-not-array": ['42{"not":"an array"}'],
    "unknown-type": ["49"],
    "empty-message": ["4"],
    "unknown-engine-packet": ["9"],
    "slash-type": ["4/nope,0"],
    "connect-auth-not-object": ['40"auth"'],
    "event-name-not-string": ["42[{}]"],
    "placeholder-out-of-range": ['451-["echo",{"_placeholder":true,"num":5}]', b"\x01"],
    "text-while-awaiting-attachment": ['451-["echo",{"_placeholder":true,"num":0}]', '42["echo"]'],
    "attachment-without-packet": [b"\x00\x01"],
    "disconnect-with-payload": ['41["x"]'],
}


async def _send_all(raw: RawClient, messages: list[str | bytes]) -> None:
    for m in messages:
        await (raw.ws.send_str(m) if isinstance(m, str) else raw.ws.send_bytes(m))


@pytest.mark.parametrize("name", list(GARBAGE))
async def test_garbage_closes_only_that_client(js: JsDriver, server: ServerProcess, name: str) -> None:
    """Bad input drops the sender (Node says "forced close" for Socket.IO-level garbage, engine.io
    "parse error" for Engine.IO-level garbage; both are accepted) and nobody else."""
    ctl = await observer(js, server.url)
    async with aiohttp.ClientSession() as session:
        raw, _, sid = await RawClient.open(session, server.url)
        await _send_all(raw, GARBAGE[name])
        assert await server_reason(ctl, sid) in ("parse error", "forced close")
        while True:
            msg = await asyncio.wait_for(raw.ws.receive(), 5)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                break
    assert await ctl.emit_ack("echo", "server fine") == ["server fine"]


ODDITIES: dict[str, list[str | bytes]] = {
    "ack-for-unknown-id": ['43999["nobody asked"]'],
    "event-without-handler": ['42["no-such-event",1]'],
    "event-without-handler-wants-ack": ['427["no-such-event"]'],
    "event-without-data": ["42"],
    "noop-packet": ["6"],
    # may race a server-side namespace disconnect, so it must not cost the whole connection
    "event-for-unjoined-namespace": ['42/chat,["echo","x"]'],
}
_ODDITY_MARKS = {"event-for-unjoined-namespace": node_bug("closes the whole connection (\"invalid state\")")}


@pytest.mark.parametrize("name", [pytest.param(n, marks=_ODDITY_MARKS.get(n, ())) for n in ODDITIES])
async def test_harmless_oddities_keep_the_connection(js: JsDriver, server: ServerProcess, name: str) -> None:
    """Well-formed but pointless packets are ignored, as socket.io does: the client stays."""
    ctl = await observer(js, server.url)
    async with aiohttp.ClientSession() as session:
        raw, _, sid = await RawClient.open(session, server.url)
        await _send_all(raw, ODDITIES[name])
        await raw.ws.send_str('421["echo","still here"]')
        while True:
            data = await raw.recv()
            if data != "2":
                break
            await raw.ws.send_str("3")
        assert data == '431["still here"]'
        await raw.ws.close()
    assert await server_reason(ctl, sid) == "transport close"


async def test_server_shutdown(js: JsDriver) -> None:
    """SIGTERM: connected clients are told, and the process exits with status 0."""
    server = ServerProcess("basic")
    try:
        server.wait_ready()
        clients = [js.client() for _ in range(3)]
        for c, transports in zip(clients, (["websocket"], ["polling"], ["polling", "websocket"]), strict=True):
            assert (await c.connect(server.url, transports=transports))["connected"]
        code = await asyncio.get_running_loop().run_in_executor(None, server.stop)
        assert code == 0, server.logs()
        for c in clients:
            reasons = [a[0] for a in await c.wait_for("disconnect", via="life")]
            assert reasons == ["transport close"], reasons
    finally:
        server.discard()


async def test_message_over_max_http_buffer_size_drops_the_sender(js: JsDriver, server: ServerProcess) -> None:
    """max_http_buffer_size (1 MB by default) bounds what one client can make the server read."""
    ctl = await observer(js, server.url)
    c = js.client()
    sid = (await c.connect(server.url, transports=["websocket"]))["id"]
    assert await c.emit_ack("echo", "x" * 900_000) == ["x" * 900_000]  # under the limit: fine
    await c.emit("echo", "x" * 1_200_000)
    assert await server_reason(ctl, sid) == "transport error"
    reasons = [a[0] for a in await c.wait_for("disconnect", via="life")]
    assert reasons == ["transport close"], reasons
    assert await ctl.emit_ack("echo", "server fine") == ["server fine"]


async def test_polling_post_over_max_http_buffer_size_is_refused(js: JsDriver, server: ServerProcess) -> None:
    c = js.client()
    assert (await c.connect(server.url, transports=["polling"]))["connected"]
    await c.emit("echo", "y" * 1_200_000)
    reasons = [a[0] for a in await c.wait_for("disconnect", via="life")]
    # Node answers 413 and keeps the session (client: "transport error"); siopg also ends the
    # session at once, so its close packet may reach the client first ("transport close").
    assert reasons in (["transport error"], ["transport close"]), reasons
    other = js.client()
    assert (await other.connect(server.url, transports=["polling"]))["connected"]
