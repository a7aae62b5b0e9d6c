"""Transports, upgrade, namespaces (static, dynamic, unknown) and namespace middlewares."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from .conftest import ServerProcess
from .jsclient import JsDriver


@pytest.fixture(scope="module")
def server(start_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    return start_server("basic")


@pytest.mark.parametrize(
    ("opts", "transport"),
    [
        ({"transports": ["polling"]}, "polling"),
        ({"transports": ["websocket"]}, "websocket"),
        ({"transports": ["polling", "websocket"], "upgrade": False}, "polling"),
    ],
    ids=["polling", "websocket", "polling-no-upgrade"],
)
async def test_single_transport_roundtrip(js: JsDriver, server: ServerProcess, opts: dict, transport: str) -> None:
    c = js.client()
    st = await c.connect(server.url, **opts)
    assert st["error"] is None and st["connected"], st
    assert st["transport"] == transport
    me = await c.call("whoami")
    assert me["id"] == st["id"] and me["nsp"] == "/"
    # a plain emit (no ack) answered by a server emit, in both directions, several times in order
    await c.on("echo")
    for i in range(5):
        await c.emit("echo", i, "x" * i)
    got = await c.wait_for("echo", count=5)
    assert got == [[i, "x" * i] for i in range(5)]
    assert (await c.state())["transport"] == transport
    assert c.received("open", via="life") == [[transport]]
    assert c.received("upgrade", via="life") == []


async def test_polling_upgrades_to_websocket(js: JsDriver, server: ServerProcess) -> None:
    c = js.client()
    st = await c.connect(server.url, transports=["polling", "websocket"])
    assert st["connected"], st
    assert c.received("open", via="life") == [["polling"]]
    assert await c.wait_for("upgrade", via="life") == [["websocket"]]
    assert (await c.state())["transport"] == "websocket"
    # the session survived the upgrade: same id, acks still work
    assert (await c.call("whoami"))["id"] == st["id"]
    assert await c.emit_ack("echo", "after upgrade", b"\x00\x01") == ["after upgrade", b"\x00\x01"]


async def test_messages_sent_during_upgrade_are_not_lost(js: JsDriver, server: ServerProcess) -> None:
    c = js.client()
    await c.connect(server.url)
    await c.on("echo")
    for i in range(30):
        await c.emit("echo", i)
        await asyncio.sleep(0.005)
    got = await c.wait_for("echo", count=30)
    assert [a[0] for a in got] == list(range(30))


async def test_handshake_auth_and_query_reach_the_server(js: JsDriver, server: ServerProcess) -> None:
    c = js.client()
    await c.connect(server.url, auth={"user": "ada", "n": 1}, query={"room": "lobby"})
    me = await c.call("whoami")
    assert me["auth"] == {"user": "ada", "n": 1}
    assert me["query"]["room"] == "lobby"


async def test_static_namespace(js: JsDriver, server: ServerProcess) -> None:
    c = js.client()
    st = await c.connect(server.url + "/chat")
    assert st["connected"], st
    assert (await c.call("whoami"))["nsp"] == "/chat"


async def test_two_namespaces_share_one_connection(js: JsDriver, server: ServerProcess) -> None:
    main, chat = js.client(), js.client()
    st = await main.connect(server.url)
    assert (await chat.connect(server.url + "/chat", share=main))["engineId"] == st["engineId"]
    assert (await main.call("whoami"))["nsp"] == "/"
    assert (await chat.call("whoami"))["nsp"] == "/chat"


@pytest.mark.parametrize("name", ["/dyn-1", "/dyn-42"])
async def test_dynamic_namespace(js: JsDriver, server: ServerProcess, name: str) -> None:
    c = js.client()
    st = await c.connect(server.url + name)
    assert st["connected"], st
    assert (await c.call("whoami"))["nsp"] == name
    assert await c.emit_ack("echo", name) == [name]


@pytest.mark.parametrize("name", ["/nope", "/dyn-x", "/dyn-"])
async def test_unknown_namespace_is_refused(js: JsDriver, server: ServerProcess, name: str) -> None:
    c = js.client()
    st = await c.connect(server.url + name)
    assert not st["connected"]
    assert st["error"]["message"] == "Invalid namespace"


async def test_unknown_namespace_does_not_break_the_server(js: JsDriver, server: ServerProcess) -> None:
    bad, good = js.client(), js.client()
    await bad.connect(server.url + "/nope")
    st = await good.connect(server.url)
    assert st["connected"]


async def test_middleware_refuses_with_message_and_data(js: JsDriver, server: ServerProcess) -> None:
    c = js.client()
    st = await c.connect(server.url + "/admin", auth={"token": "wrong"})
    assert not st["connected"]
    assert st["error"] == {"message": "not authorized", "data": {"code": 401, "hint": "send a token"}}


async def test_middleware_that_raises_refuses_too(js: JsDriver, server: ServerProcess) -> None:
    c = js.client()
    st = await c.connect(server.url + "/strict")
    assert not st["connected"]
    assert st["error"] == {"message": "go away", "data": {"reason": "banned"}}
    assert (await js.client().connect(server.url))["connected"]


async def test_middleware_accepts(js: JsDriver, server: ServerProcess) -> None:
    c = js.client()
    st = await c.connect(server.url + "/admin", auth={"token": "secret"})
    assert st["connected"], st
    assert (await c.call("whoami"))["nsp"] == "/admin"


async def test_refused_namespace_leaves_other_namespaces_working(js: JsDriver, server: ServerProcess) -> None:
    """On a shared connection, a refused /admin must not disturb "/"."""
    main, admin = js.client(), js.client()
    await main.connect(server.url)
    st = await admin.connect(server.url + "/admin", share=main)
    assert not st["connected"] and st["error"]["message"] == "not authorized"
    assert await main.emit_ack("echo", 1) == [1]


async def test_connection_storm(js: JsDriver, server: ServerProcess) -> None:
    """Fifty clients connecting at once, over all transports, all get in and all get a broadcast."""
    kinds = [["polling"], ["websocket"], ["polling", "websocket"]]
    clients = [js.client() for _ in range(50)]
    states = await asyncio.gather(
        *(c.connect(server.url, transports=kinds[i % 3]) for i, c in enumerate(clients))
    )
    assert all(st["connected"] for st in states), [st for st in states if not st["connected"]]
    assert len({st["id"] for st in states}) == 50
    room = f"storm-{states[0]['id']}"
    await asyncio.gather(*(c.call("join", room) for c in clients))
    for c in clients:
        await c.on("hello")
    await clients[0].call("to", [room], [], "hello", ["all of you"])
    for c in clients:
        assert await c.wait_for("hello") == [["all of you"]]


async def test_multiplexed_namespaces_keep_acks_apart(js: JsDriver, server: ServerProcess) -> None:
    """Two namespaces over one Engine.IO connection, acks interleaved: no answer crosses over."""
    main, chat = js.client(), js.client()
    st_main = await main.connect(server.url)
    st_chat = await chat.connect(server.url + "/chat", share=main)
    assert st_chat["connected"] and st_chat["engineId"] == st_main["engineId"]
    jobs = [main.emit_ack("echo", "main", i) for i in range(20)] + [chat.emit_ack("echo", "chat", i) for i in range(20)]
    answers = await asyncio.gather(*jobs)
    assert answers == [["main", i] for i in range(20)] + [["chat", i] for i in range(20)]
    assert (await main.call("whoami"))["nsp"] == "/"
    assert (await chat.call("whoami"))["nsp"] == "/chat"


def test_polling_handshake_announces_the_session(server: ServerProcess) -> None:
    """The Engine.IO open packet carries the server's settings (the app sets 1 s / 2 s pings)."""
    with urllib.request.urlopen(f"{server.url}/socket.io/?EIO=4&transport=polling", timeout=5) as resp:
        body = resp.read().decode()
    assert body.startswith("0"), body
    opening = json.loads(body[1:])
    assert opening["upgrades"] == ["websocket"]
    assert opening["pingInterval"] == 1000 and opening["pingTimeout"] == 2000
    assert opening["maxPayload"] == 1_000_000
    assert isinstance(opening["sid"], str) and opening["sid"]
