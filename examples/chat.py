"""A rooms chat: `siopg serve examples/chat.py:make_app`, then open http://127.0.0.1:3000/.

The page (chat.html) loads the Socket.IO client from this server: the copy installed by
`npm install` in the repository (node_modules/socket.io-client), so no CDN is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

import siopg

HERE = Path(__file__).resolve().parent
CLIENT_JS = HERE.parent / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

io = siopg.Server(connection_state_recovery=siopg.Recovery())


@io.on("connection")
async def on_connection(socket: siopg.Socket) -> None:
    if not socket.recovered:
        socket.data["name"] = str(socket.handshake.auth.get("name") or f"guest-{socket.id[:4]}")

    @socket.on("join")
    async def join(room: str, ack: Any = None) -> None:
        room = str(room)[:40]
        socket.join(room)
        await io.to(room).emit("system", f"{socket.data['name']} joined {room}")
        if ack:
            ack(sorted(r for r in socket.rooms if r != socket.id))

    @socket.on("leave")
    async def leave(room: str) -> None:
        socket.leave(room)
        await io.to(room).emit("system", f"{socket.data['name']} left {room}")

    @socket.on("say")
    async def say(room: str, text: str, ack: Any = None) -> None:
        if room not in socket.rooms:
            if ack:
                ack({"error": "join the room first"})
            return
        await io.to(room).emit("message", {"room": room, "from": socket.data["name"], "text": str(text)[:500]})
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
