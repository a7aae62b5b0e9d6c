"""The engine over real HTTP and WebSocket connections, through both bindings
(aiohttp, and the ASGI app under uvicorn); a few aiohttp-only hot-path tests."""

from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
import pytest

from siopg.engine import OutgoingMessage, RequestInfo

from .conftest import Factory, Recorder

Q = "EIO=4&transport=websocket"


async def test_polling_handshake_and_echo(any_engine: Factory) -> None:
    srv = await any_engine(ping_interval=0.3, ping_timeout=0.2)
    async with srv.http.get(srv.url, params={"EIO": "4", "transport": "polling"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; charset=UTF-8"
        assert "Set-Cookie" not in resp.headers
        assert "Access-Control-Allow-Origin" not in resp.headers
        body = await resp.text()
    handshake = json.loads(body[1:])
    assert body[0] == "0"
    assert handshake["upgrades"] == ["websocket"]
    assert (handshake["pingInterval"], handshake["pingTimeout"], handshake["maxPayload"]) == (300, 200, 1_000_000)
    assert len(handshake["sid"]) == 20
    sid = handshake["sid"]
    info = srv.recorder.sockets[0].request
    assert isinstance(info, RequestInfo)
    assert info.query["transport"] == "polling" and info.remote_address == "127.0.0.1"
    assert "host" in info.headers and info.issued > 0 and not info.secure
    post = await srv.post(sid, "4hello\x1ebAQIDBA==")
    assert post.status == 200 and await post.text() == "ok"
    poll = await srv.get(sid)
    assert await poll.text() == "4hello\x1ebAQIDBA=="
    assert srv.recorder.messages == ["hello", b"\x01\x02\x03\x04"]


async def test_long_poll_waits_for_data(any_engine: Factory) -> None:
    srv = await any_engine(recorder=Recorder(echo=False))
    sid = await srv.handshake()
    poll = asyncio.ensure_future(srv.get(sid))
    await asyncio.sleep(0.1)
    assert not poll.done()
    srv.recorder.sockets[0].send([OutgoingMessage("a"), OutgoingMessage("b")])
    resp = await asyncio.wait_for(poll, 2)
    assert await resp.text() == "4a\x1e4b"


@pytest.mark.parametrize(
    ("method", "query", "status", "code"),
    [
        ("GET", "EIO=4&transport=abc", 400, 0),
        ("GET", "EIO=4", 400, 0),
        ("GET", "EIO=4&transport=polling&sid=nope", 400, 1),
        ("POST", "EIO=4&transport=polling", 400, 2),
        ("PUT", "EIO=4&transport=polling", 400, 2),
        ("GET", "EIO=4&transport=websocket", 400, 3),
        ("GET", "EIO=3&transport=polling", 400, 5),
        ("GET", "transport=polling", 400, 5),
        ("GET", "EIO=abc&transport=polling", 400, 5),
    ],
)
async def test_bad_requests_get_reference_errors(
    any_engine: Factory, method: str, query: str, status: int, code: int
) -> None:
    srv = await any_engine()
    async with srv.http.request(method, f"{srv.url}?{query}") as resp:
        assert resp.status == status
        assert resp.headers["Content-Type"] == "application/json"
        body = await resp.json()
    assert body["code"] == code
    assert srv.recorder.sockets == []


WS_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


@pytest.mark.parametrize(
    ("query", "code"),
    [("EIO=4&transport=websocket&sid=nope", 1), ("EIO=3&transport=websocket", 5),
     ("EIO=4&transport=polling", 3), ("EIO=4&transport=abc", 0)],
)
async def test_websocket_bad_requests_are_refused(any_engine: Factory, query: str, code: int) -> None:
    srv = await any_engine()
    async with srv.http.get(f"{srv.url}?{query}", headers=WS_HEADERS) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == code
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await srv.http.ws_connect(srv.ws_url(query))
    assert info.value.status == 400
    assert srv.recorder.sockets == []


async def test_overlapping_get_closes_the_session(any_engine: Factory) -> None:
    srv = await any_engine()
    sid = await srv.handshake()
    first = asyncio.ensure_future(srv.get(sid))
    await asyncio.sleep(0.05)
    second = await srv.get(sid)
    assert second.status == 400
    first_resp = await first
    assert first_resp.status == 200 and await first_resp.text() == "1"
    assert (await srv.get(sid)).status == 400
    assert srv.recorder.closes == [(sid, "transport error", "overlap from client")]


async def test_oversized_post_is_413_and_closes(any_engine: Factory) -> None:
    srv = await any_engine(max_http_buffer_size=1000)
    sid = await srv.handshake()
    resp = await srv.post(sid, "4" + "x" * 2000)
    assert resp.status == 413
    assert srv.recorder.closes == [(sid, "transport error", "payload too large")]
    assert (await srv.get(sid)).status == 400


async def test_garbage_and_binary_posts_close_the_session(any_engine: Factory) -> None:
    srv = await any_engine()
    sid = await srv.handshake()
    assert (await srv.post(sid, "abc")).status == 400
    assert srv.recorder.closes[-1] == (sid, "parse error", None)
    sid2 = await srv.handshake()
    resp = await srv.post(sid2, b"\x01\x02", headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 400
    assert srv.recorder.closes[-1] == (sid2, "transport error", "invalid content")


async def test_close_packet_over_polling(any_engine: Factory) -> None:
    srv = await any_engine()
    sid = await srv.handshake()
    poll = asyncio.ensure_future(srv.get(sid))
    await asyncio.sleep(0.05)
    assert (await srv.post(sid, "1")).status == 200
    assert await (await poll).text() == "6"
    assert srv.recorder.closes == [(sid, "transport close", None)]


async def test_polling_heartbeat_and_ping_timeout(any_engine: Factory) -> None:
    srv = await any_engine(ping_interval=0.1, ping_timeout=0.1)
    sid = await srv.handshake()
    for _ in range(2):
        assert await (await srv.get(sid)).text() == "2"
        assert (await srv.post(sid, "3")).status == 200
    await srv.recorder.wait_closed()
    assert srv.recorder.closes == [(sid, "ping timeout", None)]
    assert (await srv.get(sid)).status == 400


async def test_websocket_session_echo_and_heartbeat(any_engine: Factory) -> None:
    srv = await any_engine(ping_interval=0.1, ping_timeout=0.2)
    async with srv.http.ws_connect(srv.ws_url(Q)) as ws:
        opened = json.loads((await ws.receive_str())[1:])
        assert opened["upgrades"] == []
        await ws.send_str("4hi")
        await ws.send_bytes(b"\x00\xff")
        assert await ws.receive_str() == "4hi"
        assert await ws.receive_bytes() == b"\x00\xff"
        for _ in range(2):
            assert await ws.receive_str(timeout=1) == "2"
            await ws.send_str("3")
        # stop answering: the server closes with "ping timeout"
        msg = await ws.receive(timeout=1)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.TEXT)
        await srv.recorder.wait_closed()
    assert srv.recorder.closes[0][1:] == ("ping timeout", None)


@pytest.mark.parametrize(
    ("action", "reason"),
    [("garbage", "parse error"), ("close_packet", "transport close"), ("disconnect", "transport close"),
     ("client_ping", "transport error")],
)
async def test_websocket_close_reasons(any_engine: Factory, action: str, reason: str) -> None:
    srv = await any_engine()
    ws = await srv.http.ws_connect(srv.ws_url(Q))
    await ws.receive_str()
    if action == "garbage":
        await ws.send_str("xyz")
    elif action == "close_packet":
        await ws.send_str("1")
    elif action == "client_ping":
        await ws.send_str("2")
    else:
        await ws.close()
    await srv.recorder.wait_closed()
    await asyncio.sleep(0.05)
    assert [c[1] for c in srv.recorder.closes] == [reason]  # exactly once
    await ws.close()
    assert srv.engine.sockets == {}


async def test_websocket_message_too_big(any_engine: Factory) -> None:
    srv = await any_engine(max_http_buffer_size=100)
    async with srv.http.ws_connect(srv.ws_url(Q)) as ws:
        await ws.receive_str()
        await ws.send_str("4" + "x" * 500)
        await srv.recorder.wait_closed()
    assert srv.recorder.closes[0][1] == "transport error"


async def test_upgrade_from_polling(any_engine: Factory) -> None:
    srv = await any_engine(recorder=Recorder(echo=True))
    sid = await srv.handshake()
    socket = srv.recorder.sockets[0]
    poll = asyncio.ensure_future(srv.get(sid))
    await asyncio.sleep(0.05)
    async with srv.http.ws_connect(srv.ws_url(f"{Q}&sid={sid}")) as ws:
        await ws.send_str("2probe")
        assert await ws.receive_str() == "3probe"
        assert await (await poll).text() == "6"  # the pending GET ends with a noop
        assert socket.transport == "polling"
        socket.send([OutgoingMessage("buffered")])
        await asyncio.sleep(0)
        await ws.send_str("5")
        assert await ws.receive_str() == "4buffered"
        assert socket.transport == "websocket"
        await ws.send_str("4after")
        assert await ws.receive_str() == "4after"
        # the polling transport is gone
        assert (await srv.get(sid)).status == 400
        # a second upgrade attempt is accepted then closed
        async with srv.http.ws_connect(srv.ws_url(f"{Q}&sid={sid}")) as ws2:
            msg = await ws2.receive(timeout=2)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await ws.send_str("4still")
        assert await ws.receive_str() == "4still"
    await srv.recorder.wait_closed()
    assert srv.recorder.closes == [(sid, "transport close", None)]


async def test_upgrade_timeout_keeps_polling(any_engine: Factory) -> None:
    srv = await any_engine(upgrade_timeout=0.1)
    sid = await srv.handshake()
    async with srv.http.ws_connect(srv.ws_url(f"{Q}&sid={sid}")) as ws:
        msg = await ws.receive(timeout=2)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert (await srv.post(sid, "4still polling")).status == 200
    assert await (await srv.get(sid)).text() == "4still polling"
    assert srv.recorder.closes == []


async def test_cors(any_engine: Factory) -> None:
    star = await any_engine(cors_allowed_origins="*")
    async with star.http.get(star.url, params={"EIO": "4", "transport": "polling"},
                             headers={"Origin": "https://a.example"}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
    async with star.http.options(star.url, headers={
        "Origin": "https://a.example", "Access-Control-Request-Headers": "x-custom"}) as resp:
        assert resp.status == 204
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert resp.headers["Access-Control-Allow-Headers"] == "x-custom"
    listed = await any_engine(cors_allowed_origins=["https://a.example"], cors_credentials=True)
    async with listed.http.get(listed.url, params={"EIO": "4", "transport": "polling"},
                               headers={"Origin": "https://a.example"}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "https://a.example"
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Vary"] == "Origin"
    async with listed.http.get(listed.url, params={"EIO": "4", "transport": "polling"},
                               headers={"Origin": "https://evil.example"}) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers
    off = await any_engine()
    async with off.http.options(off.url, headers={"Origin": "https://a.example"}) as resp:
        assert resp.status == 400
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_cookie_option(any_engine: Factory) -> None:
    srv = await any_engine(cookie={"name": "io"})
    async with srv.http.get(srv.url, params={"EIO": "4", "transport": "polling"}) as resp:
        sid = json.loads((await resp.text())[1:])["sid"]
        assert resp.headers["Set-Cookie"] == f"io={sid}; Path=/; HttpOnly; SameSite=Lax"
    async with srv.http.ws_connect(srv.ws_url(Q)) as ws:
        sid = json.loads((await ws.receive_str())[1:])["sid"]
        assert ws._response.headers["Set-Cookie"] == f"io={sid}; Path=/; HttpOnly; SameSite=Lax"
    # not on later requests of the session
    sid = await srv.handshake()
    assert "Set-Cookie" not in (await srv.post(sid, "4x")).headers


async def test_allow_request_sync_and_async(any_engine: Factory) -> None:
    seen: list[RequestInfo] = []

    def sync_hook(info: RequestInfo) -> None:
        seen.append(info)
        if info.query.get("token") != "ok":
            raise PermissionError("not allowed")

    async def async_hook(info: RequestInfo) -> None:
        await asyncio.sleep(0)
        if info.headers.get("x-token") != "ok":
            raise PermissionError()

    srv = await any_engine(allow_request=sync_hook)
    async with srv.http.get(srv.url, params={"EIO": "4", "transport": "polling"}) as resp:
        assert resp.status == 403
        # the hook's own text ("not allowed") stays in the server's log
        assert await resp.json() == {"code": 4, "message": "Forbidden"}
    await srv.handshake(token="ok")
    assert len(srv.recorder.sockets) == 1 and len(seen) == 2
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await srv.http.ws_connect(srv.ws_url(Q))
    assert info.value.status == 403
    srv2 = await any_engine(allow_request=async_hook)
    async with srv2.http.get(srv2.url, params={"EIO": "4", "transport": "polling"}) as resp:
        assert resp.status == 403
        assert await resp.json() == {"code": 4, "message": "Forbidden"}
    async with srv2.http.get(srv2.url, params={"EIO": "4", "transport": "polling"},
                             headers={"X-Token": "ok"}) as resp:
        assert resp.status == 200


async def test_transports_option(any_engine: Factory) -> None:
    srv = await any_engine(transports=("websocket",))
    async with srv.http.get(srv.url, params={"EIO": "4", "transport": "polling"}) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == 0
    async with srv.http.ws_connect(srv.ws_url(Q)) as ws:
        assert json.loads((await ws.receive_str())[1:])["upgrades"] == []
    polling_only = await any_engine(transports=("polling",))
    async with polling_only.http.get(polling_only.url, params={"EIO": "4", "transport": "polling"}) as resp:
        assert json.loads((await resp.text())[1:])["upgrades"] == []


async def test_sid_generator_option(any_engine: Factory) -> None:
    counter = iter(range(100))
    srv = await any_engine(sid_generator=lambda: f"custom-{next(counter)}")
    assert await srv.handshake() == "custom-0"
    assert await srv.handshake() == "custom-1"


async def test_http_compression(any_engine: Factory) -> None:
    srv = await any_engine(http_compression=True, recorder=Recorder(echo=False))
    sid = await srv.handshake()
    big = "x" * 5000
    srv.recorder.sockets[0].send([OutgoingMessage(big)])
    async with srv.http.get(srv.url, params={"EIO": "4", "transport": "polling", "sid": sid},
                            headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await resp.read()).decode() == "4" + big
    srv.recorder.sockets[0].send([OutgoingMessage("small")])
    async with srv.http.get(srv.url, params={"EIO": "4", "transport": "polling", "sid": sid},
                            headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as resp:
        assert "Content-Encoding" not in resp.headers
        assert await resp.text() == "4small"
    off = await any_engine(recorder=Recorder(echo=False))
    sid = await off.handshake()
    off.recorder.sockets[0].send([OutgoingMessage(big)])
    async with off.http.get(off.url, params={"EIO": "4", "transport": "polling", "sid": sid},
                            headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as resp:
        assert "Content-Encoding" not in resp.headers


async def test_per_message_deflate(aiohttp_engine: Factory) -> None:
    srv = await aiohttp_engine(per_message_deflate=True)
    async with srv.http.ws_connect(srv.ws_url(Q), compress=15) as ws:
        assert "permessage-deflate" in ws._response.headers.get("Sec-WebSocket-Extensions", "")
        await ws.receive_str()
        await ws.send_str("4" + "y" * 3000)
        assert await ws.receive_str() == "4" + "y" * 3000
        await ws.send_bytes(b"\x01" * 10)
        assert await ws.receive_bytes() == b"\x01" * 10
    off = await aiohttp_engine()
    async with off.http.ws_connect(off.ws_url(Q), compress=15) as ws:
        assert "permessage-deflate" not in ws._response.headers.get("Sec-WebSocket-Extensions", "")
        await ws.receive_str()
        await ws.send_str("4z")
        assert await ws.receive_str() == "4z"


async def test_one_write_per_tick_and_shared_frames(aiohttp_engine: Factory) -> None:
    srv = await aiohttp_engine(recorder=Recorder(echo=False))
    clients = [await srv.http.ws_connect(srv.ws_url(Q)) for _ in range(2)]
    for ws in clients:
        await ws.receive_str()
    sockets = srv.recorder.sockets
    writes: list[bytes] = []
    for s in sockets:
        transport = s._ws._transport  # type: ignore[union-attr]
        original = transport.write

        def counting(data: bytes, original=original) -> None:  # type: ignore[no-untyped-def]
            writes.append(bytes(data))
            original(data)

        transport.write = counting
    messages = [OutgoingMessage(f"m{i}") for i in range(10)]
    for m in messages:
        for s in sockets:
            s.send([m])
    await asyncio.sleep(0.01)
    assert len(writes) == 2  # one coalesced write per connection
    assert writes[0] == writes[1] == b"".join(m.ws_frame for m in messages)
    for ws in clients:
        assert [await ws.receive_str() for _ in range(10)] == [f"4m{i}" for i in range(10)]
        await ws.close()


async def test_slow_client_is_dropped_on_buffer_overflow(aiohttp_engine: Factory) -> None:
    srv = await aiohttp_engine(recorder=Recorder(echo=False), max_buffer_size=256 * 1024)
    host, port = srv.url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (f"GET /engine.io/?{Q} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    for _ in range(100):
        if srv.recorder.sockets:
            break
        await asyncio.sleep(0.01)
    socket = srv.recorder.sockets[0]
    chunk = OutgoingMessage("z" * 100_000)
    for _ in range(400):  # up to 40 MB: far beyond what the kernel buffers for a non-reader
        socket.send([chunk])
        await asyncio.sleep(0)
        if srv.recorder.closes:
            break
    assert srv.recorder.closes == [(socket.sid, "transport error", "send buffer overflow")]
    assert socket.buffered_bytes <= 256 * 1024 + 200_000
    writer.close()


async def test_close_leaves_no_task_timer_or_connection(any_engine: Factory) -> None:
    baseline = set(asyncio.all_tasks())
    srv = await any_engine()
    ws = await srv.http.ws_connect(srv.ws_url(Q))
    await ws.receive_str()
    sid = await srv.handshake()
    parked = asyncio.ensure_future(srv.get(sid))
    await asyncio.sleep(0.05)
    sockets = list(srv.recorder.sockets)
    await srv.engine.close()
    assert await (await parked).text() == "1"
    msg = await ws.receive(timeout=2)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await ws.close()
    assert sorted(r for _, r, _ in srv.recorder.closes) == ["server shutting down"] * 2
    assert srv.engine.sockets == {}
    assert all(s._timer is None for s in sockets)
    assert not srv.engine._ws_tasks and not srv.engine._bg_tasks
    await asyncio.sleep(0.05)
    leftover = {t for t in asyncio.all_tasks() - baseline if t is not asyncio.current_task()}
    assert not [t for t in leftover if "engine" in repr(t.get_coro())], leftover
    # and no new sessions while shut down
    async with srv.http.get(srv.url, params={"EIO": "4", "transport": "polling"}) as resp:
        assert resp.status == 400


async def test_socket_close_flushes_then_closes(any_engine: Factory) -> None:
    srv = await any_engine(recorder=Recorder(echo=False))
    async with srv.http.ws_connect(srv.ws_url(Q)) as ws:
        await ws.receive_str()
        socket = srv.recorder.sockets[0]
        socket.send([OutgoingMessage("last")])
        socket.close()
        assert await ws.receive_str() == "4last"
        msg = await ws.receive(timeout=2)
        assert msg.type is aiohttp.WSMsgType.CLOSE
    assert srv.recorder.closes == [(socket.sid, "forced close", None)]
    sid = await srv.handshake()
    psock = srv.recorder.sockets[1]
    psock.send([OutgoingMessage("bye")])
    psock.close()
    assert await (await srv.get(sid)).text() == "4bye\x1e1"
    assert srv.recorder.closes[-1] == (sid, "forced close", None)
