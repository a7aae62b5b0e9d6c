"""A parked polling GET whose client went away must not swallow what the server sends.

Real sockets: a raw HTTP client parks a GET, sends FIN and waits until the server has closed
its side too (so the server has seen the connection go); the server then sends, and a new GET
of the same session must receive the packet. Once for aiohttp, once for ASGI under uvicorn.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
import pytest
from engine.conftest import Factory, Running, aiohttp_engine, asgi_engine  # noqa: F401  (fixtures used below)

from siopg.engine import OutgoingMessage

SHORT = aiohttp.ClientTimeout(total=5)


@pytest.fixture(params=["aiohttp", "asgi"])
def binding(request: pytest.FixtureRequest) -> Factory:
    """Each test once behind aiohttp and once behind uvicorn (ASGI)."""
    return request.getfixturevalue(f"{request.param}_engine")  # type: ignore[no-any-return]


async def eventually(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def park_and_leave(srv: Running, sid: str) -> None:
    """Park a GET of `sid` on a raw connection, then go away and wait until the server
    closed the connection on its side (it has processed our FIN)."""
    url = urlsplit(srv.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    request = (
        f"GET {url.path}?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    session = srv.engine.sockets[sid]._session
    await eventually(lambda: session.poll_waiting)  # parked
    writer.write_eof()  # FIN: the client is gone
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed its side
    writer.close()


async def test_packet_sent_after_the_client_left_goes_to_the_next_get(binding: Factory) -> None:
    srv = await binding()
    sid = await srv.handshake()
    await park_and_leave(srv, sid)
    srv.engine.sockets[sid].send([OutgoingMessage("not lost")])
    await asyncio.sleep(0)  # the flush runs
    resp = await srv.get(sid, timeout=SHORT)
    assert resp.status == 200
    assert await resp.text() == "4not lost"
    assert srv.recorder.closes == []  # the session went on


async def test_next_get_after_the_client_left_is_no_overlap(binding: Factory) -> None:
    srv = await binding()
    sid = await srv.handshake()
    await park_and_leave(srv, sid)
    socket = srv.engine.sockets[sid]
    dead_get = socket._poll_future
    get = asyncio.ensure_future(srv.get(sid, timeout=SHORT))
    # the new GET is parked (or was refused: the old code took it for an overlap)
    await eventually(lambda: get.done() or socket._poll_future not in (None, dead_get))
    socket.send([OutgoingMessage("first"), OutgoingMessage("second")])
    resp = await get
    assert resp.status == 200
    assert await resp.text() == "4first\x1e4second"
    assert srv.recorder.closes == []


async def test_reply_broken_mid_write_ends_the_session_instead_of_sending_it_twice(
    aiohttp_engine: Factory,  # noqa: F811
) -> None:
    """A poll answer whose connection breaks after its body was handed over (the client may
    hold all of it) is not requeued: a second copy would be a duplicate (seen as ~370 replayed
    packets delivered twice under a slow Postgres). The session ends as a transport error,
    and connection state recovery then replays exactly what the client missed, by offset."""
    srv = await aiohttp_engine()
    sid = await srv.handshake()
    filler = "x" * 1000
    srv.engine.sockets[sid].send([OutgoingMessage(f"{i}:{filler}") for i in range(6000)])
    url = urlsplit(srv.url)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # a tiny receive window, and ~6 MB queued: more than the kernel buffers (4 MiB tcp_wmem max)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, (url.hostname, url.port))
    reader, writer = await asyncio.open_connection(sock=raw)
    writer.write(
        f"GET {url.path}?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readexactly(4096), 5)  # the reply has started
    assert head.startswith(b"HTTP/1.1 200")
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # RST mid-body
    await srv.recorder.wait_closed()
    assert srv.recorder.closes == [(sid, "transport error", "poll connection closed prematurely")]
    resp = await srv.get(sid, timeout=SHORT)
    assert resp.status == 400  # the session is gone: nothing is delivered a second time
