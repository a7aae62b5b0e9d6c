"""Volatile packets are dropped for a connection that cannot be written to right now."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, AsyncIterator

import aiohttp
import pytest

import siopg
from siopg.engine.message import OutgoingMessage
from siopg.engine.socket import WRITABLE_LIMIT

from .helpers import start_app, wait_until



@pytest.fixture
async def served() -> AsyncIterator[Any]:
    """(io, url, http session, connected sockets) for a server on a free port."""
    io = siopg.Server()
    sockets: list[siopg.Socket] = []
    io.on("connection", sockets.append)
    runner, port = await start_app(io.aiohttp_app())
    async with aiohttp.ClientSession() as http:
        yield io, f"http://127.0.0.1:{port}/socket.io/", http, sockets
    await runner.cleanup()


async def test_polling_without_a_pending_get_misses_volatile_packets(served: Any) -> None:
    io, url, http, sockets = served
    async with http.get(url, params={"EIO": "4", "transport": "polling"}) as resp:
        sid = json.loads((await resp.text())[1:])["sid"]
    q = {"EIO": "4", "transport": "polling", "sid": sid}
    async with http.post(url, params=q, data="40") as resp:
        assert resp.status == 200
    async with http.get(url, params=q) as resp:
        assert (await resp.text()).startswith("40{")
    await wait_until(lambda: len(sockets) == 1)
    socket = sockets[0]
    assert not socket.conn.writable  # no GET waiting

    await io.volatile.emit("v-broadcast", 1)
    await socket.volatile.emit("v-socket", 2)
    await socket.timeout(5).volatile.emit("v-ack", callback=lambda *a: None)
    await io.emit("kept", 3)
    async with http.get(url, params=q) as resp:
        assert await resp.text() == '42["kept",3]'
    assert len(socket.acks) == 1  # the dropped packet's ack still waits for its timeout

    parked = asyncio.ensure_future(http.get(url, params=q))
    await wait_until(lambda: socket.conn.writable)
    await io.volatile.emit("v-now", 4)
    await socket.volatile.emit("v-socket-now", 5)
    resp = await parked
    assert await resp.text() == '42["v-now",4]\x1e42["v-socket-now",5]'
    resp.release()


async def test_websocket_is_writable_until_its_buffer_backs_up(served: Any) -> None:
    io, url, http, sockets = served
    async with http.ws_connect(url + "?EIO=4&transport=websocket") as ws:
        await ws.receive_str()  # open packet
        await ws.send_str("40")
        assert (await ws.receive_str()).startswith("40{")
        await wait_until(lambda: len(sockets) == 1)
        conn = sockets[0].conn
        assert conn.writable
        await io.volatile.emit("v", 1)
        assert await ws.receive_str() == '42["v",1]'

    # a client that never reads: the kernel buffers fill, then the transport's own buffer
    host, port = url.split("//")[1].split("/")[0].split(":")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small: the backlog builds fast
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=raw)
    writer.write(
        ("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"\x81\x82\x00\x00\x00\x0040")  # masked text frame "40": join "/"
    await wait_until(lambda: len(sockets) == 2)
    conn = sockets[1].conn
    chunk = [OutgoingMessage("z" * 50_000)]
    # < 8 MiB in all (no overflow); stops once the kernel buffers are full and bytes wait
    for _ in range(150):
        if not conn.writable:
            break
        conn.send(chunk)
        await asyncio.sleep(0)
    assert not conn.writable
    assert conn.buffered_bytes >= WRITABLE_LIMIT
    queued = len(conn._session.queue)
    await sockets[1].volatile.emit("v", 1)
    await io.to(sockets[1].id).volatile.emit("v", 2)
    assert len(conn._session.queue) == queued  # dropped, not queued
    await sockets[1].emit("kept", 3)
    assert len(conn._session.queue) == queued + 1
    writer.close()


async def test_volatile_broadcast_with_ack_skips_unwritable_clients() -> None:
    from siopg.server.testing import FakeClient

    io = siopg.Server()
    try:
        a, b = FakeClient(io), FakeClient(io)
        await a.connected()
        await b.connected()
        b.conn.writable = False
        pending = asyncio.ensure_future(io.volatile.timeout(2).emit_with_ack("q"))
        ask = await a.wait_for(lambda p: p.data and p.data[0] == "q" if isinstance(p.data, list) else False)
        a.ack(ask.id, "a")
        assert await asyncio.wait_for(pending, 1) == ["a"]  # b was never asked nor waited for
        assert b.events("q") == []
    finally:
        await io.close()
