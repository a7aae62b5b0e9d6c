"""The namespace CONNECT reply leaves on its own, before what the connection handler emits.

socket.io writes it at once and sends later packets in a following write (or, over polling,
the next GET). Clients that read one frame at a time (like socket.io-protocol's test suite)
depend on that, so events emitted by a synchronous connection handler must not be coalesced
into the CONNECT reply's write.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

import aiohttp
import pytest

import siopg

from .helpers import start_app



@pytest.fixture
async def served() -> AsyncIterator[Any]:
    io = siopg.Server()
    sockets: list[siopg.Socket] = []

    @io.on("connection")
    def on_connection(socket: siopg.Socket) -> None:  # synchronous: emits in the same tick
        sockets.append(socket)
        socket.emit("auth", socket.handshake.auth)
        socket.emit("second", 2)

    runner, port = await start_app(io.aiohttp_app())
    async with aiohttp.ClientSession() as http:
        yield io, f"http://127.0.0.1:{port}/socket.io/", http, sockets
    await io.close()
    await runner.cleanup()


async def test_polling_connect_reply_answers_the_parked_get_alone(served: Any) -> None:
    io, url, http, sockets = served
    async with http.get(url, params={"EIO": "4", "transport": "polling"}) as resp:
        sid = json.loads((await resp.text())[1:])["sid"]
    q = {"EIO": "4", "transport": "polling", "sid": sid}
    parked = asyncio.ensure_future(http.get(url, params=q))
    await asyncio.sleep(0.05)
    async with http.post(url, params=q, data='40{"token":"t"}') as resp:
        assert resp.status == 200
    first = await parked
    assert json.loads((await first.text())[2:]) == {"sid": sockets[0].id}
    first.release()
    async with http.get(url, params=q) as resp:
        assert await resp.text() == '42["auth",{"token":"t"}]\x1e42["second",2]'


async def test_websocket_connect_reply_is_its_own_write(served: Any) -> None:
    io, url, http, sockets = served
    async with http.ws_connect(url + "?EIO=4&transport=websocket") as ws:
        await ws.receive_str()
        conn = next(iter(io.engine.sockets.values()))
        transport = conn._ws._transport
        writes: list[bytes] = []
        original = transport.write

        def recording(data: bytes) -> None:
            writes.append(bytes(data))
            original(data)

        transport.write = recording
        await ws.send_str("40")
        assert (await ws.receive_str()).startswith("40{")
        assert await ws.receive_str() == '42["auth",{}]'
        assert await ws.receive_str() == '42["second",2]'
        assert len(writes) == 2
        assert writes[0].endswith(b'40{"sid":"' + sockets[0].id.encode() + b'"}')
        assert writes[1].count(b"42[") == 2  # the handler's emits, coalesced together
