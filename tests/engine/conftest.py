"""Fixtures: a real aiohttp server (port 0) around an EngineServer, and a recorder."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from siopg.engine import EngineOptions, EngineServer, EngineSocket, OutgoingMessage
from siopg.engine.aiohttp_binding import aiohttp_handler
from siopg.engine.asgi import EngineASGIApp


@dataclass
class Recorder:
    """Echoes every message back and records connections and closes."""

    echo: bool = True
    sockets: list[EngineSocket] = field(default_factory=list)
    messages: list[str | bytes] = field(default_factory=list)
    closes: list[tuple[str, str, str | None]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_connection(self, socket: EngineSocket) -> None:
        self.sockets.append(socket)

        def on_message(data: str | bytes) -> None:
            self.messages.append(data)
            if self.echo:
                socket.send([OutgoingMessage(data)])

        def on_close(reason: str, description: str | None) -> None:
            self.closes.append((socket.sid, reason, description))
            self.closed.set()

        socket.on_message = on_message
        socket.on_close = on_close

    async def wait_closed(self, count: int = 1, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while len(self.closes) < count:
                self.closed.clear()
                await self.closed.wait()

        await asyncio.wait_for(wait(), timeout)


@dataclass
class Running:
    url: str
    engine: EngineServer
    recorder: Recorder
    http: aiohttp.ClientSession

    def ws_url(self, query: str) -> str:
        return self.url.replace("http", "ws", 1) + "?" + query

    async def handshake(self, **extra: str) -> str:
        params = {"EIO": "4", "transport": "polling", **extra}
        async with self.http.get(self.url, params=params) as resp:
            assert resp.status == 200
            return json.loads((await resp.text())[1:])["sid"]  # type: ignore[no-any-return]

    async def get(self, sid: str, **kw: Any) -> aiohttp.ClientResponse:
        resp = await self.http.get(self.url, params={"EIO": "4", "transport": "polling", "sid": sid}, **kw)
        await resp.read()
        return resp

    async def post(self, sid: str, body: str | bytes, **kw: Any) -> aiohttp.ClientResponse:
        resp = await self.http.post(
            self.url, params={"EIO": "4", "transport": "polling", "sid": sid}, data=body, **kw
        )
        await resp.read()
        return resp


Factory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def asgi_engine() -> AsyncIterator[Factory]:
    """Start an engine's ASGI app under uvicorn on a free port: `await asgi_engine(**options)`.
    `wrap(app) -> asgi app` lets a test mount the engine inside another framework."""
    import uvicorn

    started: list[tuple[uvicorn.Server, asyncio.Task[None], EngineServer, aiohttp.ClientSession]] = []

    async def start(recorder: Recorder | None = None, wrap: Any = None, mount: str = "",
                    **options: Any) -> Running:
        recorder = recorder or Recorder()
        options.setdefault("path", "/engine.io/")
        engine = EngineServer(recorder.on_connection, EngineOptions(**options))
        app = EngineASGIApp(engine) if wrap is None else wrap(engine)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on")
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve())
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        http = aiohttp.ClientSession()
        started.append((server, task, engine, http))
        return Running(f"http://127.0.0.1:{port}{mount}{engine.options.path}", engine, recorder, http)

    yield start
    for server, task, engine, http in started:
        await http.close()
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await engine.close()


@pytest.fixture
async def aiohttp_engine() -> AsyncIterator[Factory]:
    """Start an engine behind aiohttp on a free port: `await aiohttp_engine(**options)`."""
    runners: list[tuple[web.AppRunner, EngineServer, aiohttp.ClientSession]] = []

    async def start(recorder: Recorder | None = None, **options: Any) -> Running:
        recorder = recorder or Recorder()
        options.setdefault("path", "/engine.io/")
        engine = EngineServer(recorder.on_connection, EngineOptions(**options))
        app = web.Application()
        app.router.add_route("*", engine.options.path, aiohttp_handler(engine))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        http = aiohttp.ClientSession()
        runners.append((runner, engine, http))
        return Running(f"http://127.0.0.1:{port}{engine.options.path}", engine, recorder, http)

    yield start
    for runner, engine, http in runners:
        await engine.close()
        await http.close()
        await runner.cleanup()


@pytest.fixture(params=["aiohttp", "asgi"])
def any_engine(request: pytest.FixtureRequest, aiohttp_engine: Factory, asgi_engine: Factory) -> Factory:
    """The same behaviour test, once per binding."""
    return aiohttp_engine if request.param == "aiohttp" else asgi_engine
