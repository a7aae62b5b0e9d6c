"""A rooms chat: `siopg serve examples/chat.py:make_app` (or `python examples/chat.py`), then open
the page URL it prints, http://127.0.0.1:3000/.

The page (chat.html) joins the room it shows as soon as it connects (type another and press
Join to add one); the name field is sent in the handshake. It loads the Socket.IO client from
this server: the copy installed by `npm install` in the repository
(node_modules/socket.io-client), so no CDN is needed. (`chat.py:io` serves the Socket.IO
endpoint alone, without the page: the tests use it.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

import siopg

HERE = Path(__file__).resolve().parent
CLIENT_JS = HERE.parent / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

io = siopg.Server(connection_state_recovery=siopg.Recovery())


def clean(text: Any, limit: int) -> str:
    """Client text made safe to store and relay: cut to `limit` characters, without NUL or
    lone surrogates (Postgres text cannot hold them, so one bad value must not reach it)."""
    text = str(text)[:limit].replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")


@io.on("connection")
async def on_connection(socket: siopg.Socket) -> None:
    if not socket.recovered:
        socket.data["name"] = clean(socket.handshake.auth.get("name") or f"guest-{socket.id[:4]}", 40)

    @socket.on("join")
    async def join(room: str, ack: Any = None) -> None:
        room = str(room)
        try:
            if len(room) > 40:
                raise ValueError("room names are limited to 40 characters here")
            socket.join(room)  # ValueError for a name siopg cannot carry (NUL, lone surrogate...)
        except ValueError:
            if ack:
                ack({"error": "invalid room name"})
            return
        await io.to(room).emit("system", f"{socket.data['name']} joined {room}")
        if ack:
            ack(sorted(r for r in socket.rooms if r != socket.id))

    @socket.on("leave")
    async def leave(room: str) -> None:
        room = str(room)
        if room not in socket.rooms or room == socket.id:
            return  # never joined: nothing to leave (and nothing to announce)
        socket.leave(room)
        await io.to(room).emit("system", f"{socket.data['name']} left {room}")

    @socket.on("say")
    async def say(room: str, text: str, ack: Any = None) -> None:
        room = str(room)
        if room not in socket.rooms or room == socket.id:
            if ack:
                ack({"error": "join the room first"})
            return
        await io.to(room).emit("message", {"room": room, "from": socket.data["name"], "text": clean(text, 500)})
        if ack:
            ack({"ok": True})

    @socket.on("disconnecting")
    def disconnecting(reason: str) -> None:
        for room in socket.rooms - {socket.id}:
            socket.to(room).emit("system", f"{socket.data['name']} left ({reason})")


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(HERE / "chat.html")


async def client_js(request: web.Request) -> web.StreamResponse:
    if not CLIENT_JS.exists():
        raise web.HTTPNotFound(text="run `npm install` in the repository to get socket.io-client")
    return web.FileResponse(CLIENT_JS)


def make_app() -> web.Application:
    """The chat page, the client script and the Socket.IO endpoint on one aiohttp app."""
    app = io.aiohttp_app(metrics=True)
    app.router.add_get("/", index)
    app.router.add_get("/socket.io.min.js", client_js)
    return app


if __name__ == "__main__":
    import asyncio

    from siopg.cli import serve

    asyncio.run(serve(io, "127.0.0.1", 3000, app=make_app()))
