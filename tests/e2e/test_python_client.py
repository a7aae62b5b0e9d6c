"""python-socketio's AsyncClient against the server: a second, independent client implementation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from .conftest import BACKEND, ServerProcess


@pytest.fixture(scope="module")
def server(start_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    return start_server("basic")


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]])
async def test_connect_and_ack(make_client: Any, server: ServerProcess, transports: list[str]) -> None:
    sio = await make_client(server.url, transports=transports)
    assert sio.connected and sio.get_sid("/")
    assert await sio.call("echo", "hi", timeout=3) == "hi"
    assert await sio.call("echo", (1, [2], {"3": None}), timeout=3) == (1, [2], {"3": None})
    me = await sio.call("whoami", timeout=3)
    assert me["id"] == sio.get_sid("/") and me["nsp"] == "/"


async def test_emit_and_receive_events(make_client: Any, server: ServerProcess) -> None:
    sio = await make_client(server.url)
    got: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    sio.on("echo", lambda *args: got.put_nowait(args))
    for i in range(3):
        await sio.emit("echo", {"i": i, "bin": bytes([i]) * 3})
    for i in range(3):
        assert await asyncio.wait_for(got.get(), 3) == ({"i": i, "bin": bytes([i]) * 3},)


async def test_emit_with_callback(make_client: Any, server: ServerProcess) -> None:
    sio = await make_client(server.url)
    done: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
    await sio.emit("echo", ("a", b"\x00"), callback=lambda *args: done.set_result(args))
    assert await asyncio.wait_for(done, 3) == ("a", b"\x00")


@pytest.mark.skipif(BACKEND == "node", reason="a JavaScript server rounds numbers to doubles")
async def test_big_ints_and_unicode_are_exact(make_client: Any, server: ServerProcess) -> None:
    """Python to Python there is no double rounding: ints beyond 2**53 must survive."""
    sio = await make_client(server.url)
    value = {"big": 2**64 + 1, "neg": -(2**63), "s": "𝄞😀 ü", "f": 0.1}
    assert await sio.call("echo", value, timeout=3) == value


async def test_server_asks_client(make_client: Any, server: ServerProcess) -> None:
    sio = await make_client(server.url)
    sio.on("question", lambda *args: {"got": list(args)})
    assert await sio.call("ask", ("question", [1, "x"], 2000), timeout=5) == {"ok": {"got": [1, "x"]}}


@pytest.mark.skipif(BACKEND == "node", reason="socket.io's emitWithAck keeps only the first argument")
async def test_server_asks_client_several_answers(make_client: Any, server: ServerProcess) -> None:
    """siopg's emit_with_ack returns several ack arguments as a list (docs/api.md)."""
    sio = await make_client(server.url)
    sio.on("pair", lambda *args: (1, b"\x02"))
    assert await sio.call("ask", ("pair", [], 2000), timeout=5) == {"ok": [1, b"\x02"]}


async def test_namespaces(make_client: Any, server: ServerProcess) -> None:
    sio = await make_client(server.url, namespaces=["/", "/chat", "/dyn-7"])
    assert sio.get_sid("/") and sio.get_sid("/chat") and sio.get_sid("/dyn-7")
    for nsp in ("/", "/chat", "/dyn-7"):
        me = await sio.call("whoami", namespace=nsp, timeout=3)
        assert me["nsp"] == nsp and me["id"] == sio.get_sid(nsp)


async def test_middleware_refusal(server: ServerProcess) -> None:
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", lambda *args: errors.append(args), namespace="/admin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(server.url, namespaces=["/admin"], auth={"token": "no"}, transports=["websocket"], wait_timeout=5)
    assert errors == [({"message": "not authorized", "data": {"code": 401, "hint": "send a token"}},)], errors
    await sio.disconnect()


async def test_middleware_accepts_auth(make_client: Any, server: ServerProcess) -> None:
    sio = await make_client(server.url, namespaces=["/admin"], auth={"token": "secret"})
    assert (await sio.call("whoami", namespace="/admin", timeout=3))["auth"] == {"token": "secret"}


async def test_rooms_between_python_clients(make_client: Any, server: ServerProcess) -> None:
    a, b = await make_client(server.url), await make_client(server.url)
    got: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    b.on("news", lambda *args: got.put_nowait(args))
    assert await b.call("join", "py-room", timeout=3) == sorted([b.get_sid("/"), "py-room"])
    assert await a.call("to", (["py-room"], [], "news", ["hello", b"\x01"]), timeout=3) is True
    assert await asyncio.wait_for(got.get(), 3) == ("hello", b"\x01")


async def test_disconnect_is_seen_by_the_server(make_client: Any, server: ServerProcess) -> None:
    watcher, leaver = await make_client(server.url), await make_client(server.url)
    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    watcher.on("disconnected", lambda info: seen.put_nowait(info))
    await watcher.call("join", "observers", timeout=3)
    sid = leaver.get_sid("/")
    await leaver.disconnect()
    info = await asyncio.wait_for(seen.get(), 3)
    # python-socketio sends DISCONNECT then closes the transport: either may win the race
    assert info["id"] == sid and info["reason"] in ("client namespace disconnect", "transport close"), info
