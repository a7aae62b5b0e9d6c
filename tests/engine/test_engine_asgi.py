"""ASGI-specific behaviour: lifespan, other apps, mounting in Starlette."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from siopg.engine import EngineServer
from siopg.engine.asgi import EngineASGIApp

from .conftest import Factory


async def _hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("hello from starlette")


async def test_other_app_gets_other_paths_and_lifespan(asgi_engine: Factory) -> None:
    lifespan_events: list[str] = []

    async def other(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                lifespan_events.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"other"})

    srv = await asgi_engine(wrap=lambda engine: EngineASGIApp(engine, other))
    base = srv.url.rsplit("/engine.io/", 1)[0]
    async with srv.http.get(base + "/elsewhere") as resp:
        assert await resp.text() == "other"
    assert await srv.handshake()
    assert lifespan_events == ["lifespan.startup"]


async def test_without_other_app_unknown_paths_are_404(asgi_engine: Factory) -> None:
    srv = await asgi_engine()
    base = srv.url.rsplit("/engine.io/", 1)[0]
    async with srv.http.get(base + "/nope") as resp:
        assert resp.status == 404


async def test_mounted_in_starlette(asgi_engine: Factory) -> None:
    def wrap(engine: EngineServer) -> Starlette:
        return Starlette(routes=[Route("/", _hello), Mount("/engine.io", app=EngineASGIApp(engine))])

    srv = await asgi_engine(wrap=wrap)
    base = srv.url.rsplit("/engine.io/", 1)[0]
    async with srv.http.get(base + "/") as resp:
        assert await resp.text() == "hello from starlette"
    sid = await srv.handshake()
    assert (await srv.post(sid, "4via starlette")).status == 200
    assert await (await srv.get(sid)).text() == "4via starlette"
    async with srv.http.ws_connect(srv.ws_url("EIO=4&transport=websocket")) as ws:
        assert json.loads((await ws.receive_str())[1:])["upgrades"] == []
        await ws.send_str("4ws")
        assert await ws.receive_str() == "4ws"
