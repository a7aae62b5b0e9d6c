"""siopg mounted in a FastAPI app: Socket.IO at /socket.io/, your routes everywhere else.

    pip install siopg fastapi uvicorn
    uvicorn examples.fastapi_app:app --port 3000      # or: uvicorn fastapi_app:app from this folder

Then `io("http://localhost:3000")` from any Socket.IO client. The ASGI path has no /metrics
and no /dashboard (those are `siopg serve` features) and no write coalescing: `siopg serve`
is the fast path; mount in FastAPI when the HTTP routes live there.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

import siopg

io = siopg.Server(cors_allowed_origins="*", connection_state_recovery=siopg.Recovery())
api = FastAPI()


@api.get("/hello")
async def hello() -> dict[str, Any]:
    """An ordinary FastAPI route beside Socket.IO; it can emit to the clients too."""
    await io.to("lobby").emit("chat", {"from": "http", "text": "hello from FastAPI"})
    return {"sockets": len(io.of("/").sockets)}


@io.on("connection")
async def connection(socket: siopg.Socket) -> None:
    socket.join("lobby")

    @socket.on("chat")
    async def chat(text: str, ack: Any = None) -> None:
        await io.to("lobby").emit("chat", {"from": socket.id, "text": text})
        if ack:
            ack("delivered")


app = io.asgi_app(api)  # /socket.io/ -> siopg, everything else -> FastAPI (lifespan too)
