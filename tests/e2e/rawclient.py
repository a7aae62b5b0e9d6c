"""A hand-written Engine.IO/Socket.IO client over WebSocket, for tests that misbehave on purpose
(never answer pings, send garbage, resume a session by hand)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp


class RawClient:
    """A hand-written Engine.IO/Socket.IO client over WebSocket, to misbehave on purpose."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        # packets that came before the CONNECT reply (socket.io sends replayed packets first)
        self.early: list[str] = []

    @classmethod
    async def open(
        cls, session: aiohttp.ClientSession, url: str, auth: dict[str, Any] | None = None
    ) -> tuple[RawClient, dict[str, Any], str]:
        """Handshake and join "/"; returns the client, the Engine.IO handshake and the socket id."""
        raw, handshake, reply = await cls.open_with_reply(session, url, auth)
        return raw, handshake, reply["sid"]

    @classmethod
    async def open_with_reply(
        cls, session: aiohttp.ClientSession, url: str, auth: dict[str, Any] | None = None
    ) -> tuple[RawClient, dict[str, Any], dict[str, Any]]:
        """Like open(), returning the whole CONNECT reply ({"sid", "pid"?})."""
        ws = await session.ws_connect(url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket")
        raw = cls(ws)
        opening = await raw.recv()
        assert opening.startswith("0"), opening
        handshake = json.loads(opening[1:])
        await ws.send_str("40" + (json.dumps(auth) if auth is not None else ""))
        while not (connected := await raw.recv()).startswith("40"):
            assert connected.startswith("42"), connected
            raw.early.append(connected)
        return raw, handshake, json.loads(connected[2:])

    async def recv_packet(self) -> str:
        """The next Socket.IO packet, answering pings on the way."""
        if self.early:
            return self.early.pop(0)
        while True:
            data = await self.recv()
            if data == "2":
                await self.ws.send_str("3")
                continue
            return data

    async def recv(self) -> str:
        msg = await asyncio.wait_for(self.ws.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return msg.data


