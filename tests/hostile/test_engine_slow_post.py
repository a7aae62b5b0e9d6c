"""A polling POST whose body trickles in cannot hold its connection open: it ends at the body
timeout, and at once when its session closes. Real sockets, aiohttp and ASGI (uvicorn)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import pytest
from engine.conftest import Factory, Running, aiohttp_engine, asgi_engine  # noqa: F401  (fixtures used below)


@pytest.fixture(params=["aiohttp", "asgi"])
def binding(request: pytest.FixtureRequest) -> Factory:
    """Each test once behind aiohttp and once behind uvicorn (ASGI)."""
    return request.getfixturevalue(f"{request.param}_engine")  # type: ignore[no-any-return]


async def slow_post(srv: Running, sid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Start a POST announcing 1000 bytes and send only 10 of them."""
    url = urlsplit(srv.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        (
            f"POST {url.path}?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
            "4aaaaaaaaa"
        ).encode()
    )
    await writer.drain()
    return reader, writer


async def answer_and_close(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes the connection (which it must do)."""
    return await asyncio.wait_for(reader.read(), within)


async def test_slow_post_ends_at_the_body_timeout(binding: Factory) -> None:
    srv = await binding(http_body_timeout=0.5)
    sid = await srv.handshake()
    started = time.monotonic()
    reader, writer = await slow_post(srv, sid)
    try:
        answer = await answer_and_close(reader, 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert time.monotonic() - started < 8
    await srv.recorder.wait_closed()
    assert srv.recorder.closes == [(sid, "transport error", "request body timeout")]


async def test_slow_post_ends_when_its_session_closes(binding: Factory) -> None:
    # default body timeout (20 s); the session dies of a ping timeout after ~0.6 s
    srv = await binding(ping_interval=0.3, ping_timeout=0.3)
    sid = await srv.handshake()
    reader, writer = await slow_post(srv, sid)
    try:
        await srv.recorder.wait_closed()
        assert srv.recorder.closes[0][1] == "ping timeout"
        answer = await answer_and_close(reader, 5)  # not 20 s later (nor never)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
