"""A real siopg server (aiohttp, port 0) driven by python-socketio's AsyncClient."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest
import socketio
from aiohttp import web

import siopg

from .helpers import start_app



async def start(io: siopg.Server, metrics: bool = False) -> tuple[web.AppRunner, str]:
    runner, port = await start_app(io.aiohttp_app(metrics=metrics))
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def served() -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def serve(io: siopg.Server, metrics: bool = False) -> str:
        runner, url = await start(io, metrics)
        runners.append(runner)
        return url

    yield serve
    for runner in runners:
        await runner.cleanup()


def chat_server() -> siopg.Server:
    io = siopg.Server()

    @io.on("connection")
    async def on_connection(socket: siopg.Socket) -> None:
        @socket.on("join")
        def join(room: str, ack: Any = None) -> None:
            socket.join(room)
            if ack:
                ack(sorted(socket.rooms - {socket.id}))

        @socket.on("say")
        async def say(room: str, text: str) -> None:
            await socket.to(room).emit("said", {"from": socket.id, "text": text})

        @socket.on("double")
        def double(x: int, ack: Any = None) -> None:
            ack(x * 2)

        @socket.on("ask-me")
        async def ask_me(ack: Any = None) -> None:
            answer = await socket.timeout(2).emit_with_ack("question", "6*7?")
            ack(answer)

    return io


async def new_client(url: str, transports: list[str], **kwargs: Any) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=transports, wait_timeout=5, **kwargs)
    return client


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_connect_emit_ack_rooms_broadcast(served: Any, transports: list[str]) -> None:
    io = chat_server()
    url = await served(io)
    alice = await new_client(url, transports)
    bob = await new_client(url, transports)
    said: asyncio.Queue[Any] = asyncio.Queue()
    bob.on("said", said.put_nowait)

    @alice.on("question")
    def question(text: str) -> int:
        return 42

    try:
        assert await alice.call("double", 21, timeout=5) == 42
        assert await bob.call("join", "room1", timeout=5) == ["room1"]
        await alice.emit("say", ("room1", "hello"))
        message = await asyncio.wait_for(said.get(), 5)
        assert message == {"from": alice.get_sid("/"), "text": "hello"}
        assert await alice.call("ask-me", timeout=5) == 42
        assert len(io.sockets.sockets) == 2
    finally:
        await alice.disconnect()
        await bob.disconnect()
    await asyncio.sleep(0.05)
    assert io.sockets.sockets == {}
    await io.close()


async def test_broadcast_ack_collects_every_answer_over_the_wire(served: Any) -> None:
    io = siopg.Server()
    url = await served(io)
    clients = [await new_client(url, ["websocket"]) for _ in range(3)]
    for i, client in enumerate(clients):
        client.on("vote", lambda i=i: i)  # noqa: B023 - bound by default argument
    try:
        answers = await io.timeout(2).emit_with_ack("vote")
        assert sorted(answers) == [0, 1, 2]
    finally:
        for client in clients:
            await client.disconnect()
        await io.close()


async def test_auth_middleware_refusal_reaches_client(served: Any) -> None:
    io = siopg.Server()

    def guard(socket: siopg.Socket, next_: Any) -> None:
        if socket.handshake.auth.get("token") == "ok":
            next_()
        else:
            next_(siopg.ConnectError("not authorized", {"code": 401}))

    io.use(guard)
    url = await served(io)
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, transports=["websocket"], auth={"token": "no"}, wait_timeout=5)
    assert errors == [{"message": "not authorized", "data": {"code": 401}}]
    good = await new_client(url, ["websocket"], auth={"token": "ok"})
    await good.disconnect()
    await io.close()


async def test_binary_round_trip_and_metrics_route(served: Any) -> None:
    io = siopg.Server()
    io.on("connection", lambda s: s.on("echo", lambda data, ack=None: ack(data)))
    url = await served(io, metrics=True)
    client = await new_client(url, ["websocket"])
    try:
        payload = {"blob": b"\x00\xff" * 100, "n": [1, 2.5, None]}
        assert await client.call("echo", payload, timeout=5) == payload
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/metrics") as resp:
                body = await resp.text()
        assert resp.status == 200
        assert 'siopg_connected_sockets{namespace="/"} 1.0' in body
        assert "siopg_packets_received_total 1.0" in body
    finally:
        await client.disconnect()
        await io.close()


async def test_metrics_count_connections_by_transport_and_application_rooms(served: Any) -> None:
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    io = siopg.Server()

    @io.on("connection")
    def on_connection(socket: siopg.Socket) -> None:
        @socket.on("join")
        def join(rooms: list[str], ack: Any = None) -> None:
            socket.join(rooms)
            ack("joined")

    url = await served(io, metrics=True)

    async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/metrics") as resp:
                assert resp.status == 200
                body = await resp.text()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }

    ws = await new_client(url, ["websocket"])
    polling = await new_client(url, ["polling"])
    try:
        await ws.call("join", ["a", "b"], timeout=5)
        await polling.call("join", ["a"], timeout=5)
        got = await scrape()
        assert got[("siopg_engine_connections_by_transport", (("transport", "websocket"),))] == 1
        assert got[("siopg_engine_connections_by_transport", (("transport", "polling"),))] == 1
        assert got[("siopg_engine_connections_open", ())] == 2
        assert got[("siopg_rooms", (("namespace", "/"),))] == 2  # a and b; the sockets' own rooms left out
    finally:
        await ws.disconnect()
        await polling.disconnect()
    for _ in range(200):
        got = await scrape()
        if got[("siopg_engine_connections_open", ())] == 0:
            break
        await asyncio.sleep(0.02)
    assert got[("siopg_engine_connections_by_transport", (("transport", "websocket"),))] == 0
    assert got[("siopg_rooms", (("namespace", "/"),))] == 0
    await io.close()


async def test_asgi_app_under_uvicorn_with_lifespan() -> None:
    import uvicorn

    io = chat_server()

    async def other(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # a minimal app of the user's, with its own lifespan
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"{message['type']}.complete"})
                if kind == "shutdown":
                    return
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"other app"})

    config = uvicorn.Config(io.asgi_app(other), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        for transports in (["polling"], ["websocket"]):
            client = await new_client(url, transports)
            assert await client.call("double", 4, timeout=5) == 8
            await client.disconnect()
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/elsewhere") as resp:
                assert await resp.text() == "other app"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
    assert io._closing  # the lifespan shutdown closed the siopg server


async def test_close_leaves_no_task_or_timer_behind(served: Any) -> None:
    io = siopg.Server(connection_state_recovery=siopg.Recovery())
    io.on("connection", lambda s: s.on("slow", lambda ack=None: None))
    url = await served(io)
    client = await new_client(url, ["websocket"])
    gate = asyncio.Event()

    @client.on("never")
    async def never() -> None:  # answers only after the server closed
        await gate.wait()

    pending = io.timeout(30).emit_with_ack("never")  # would keep a 30 s timer alive
    await asyncio.sleep(0.05)
    await io.close()
    with pytest.raises(siopg.AckTimeoutError):
        await pending
    gate.set()
    await client.disconnect()
    await asyncio.sleep(0.05)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == []
    loop = asyncio.get_running_loop()
    timers = [h for h in getattr(loop, "_scheduled", []) if not h.cancelled()]
    assert timers == []
