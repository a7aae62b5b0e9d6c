"""Red team 2: one client's handshake value that the cluster codec cannot pack breaks
`fetch_sockets()` for every client of every other server.

`describe_socket()` (siopg/adapter/cluster.py ~586) puts `handshake.auth` and `socket.data`
into the FETCH_SOCKETS_RESPONSE, which is packed as ONE message by
siopg/adapter/postgres/codec.py:pack (msgpack, `datetime=False`, ints limited to 64 bits).
A CONNECT whose auth holds a Date (msgpack parser: ext 0 of 8 bytes decodes to `datetime`) or
an integer over 2**64 (default parser: JSON has no bound) makes the whole answer of that
server unpackable: the error is logged ("cannot send a datetime across servers" /
OverflowError) and every fetch_sockets() elsewhere fails with "1 of 1 servers did not
answer" after its timeout, for as long as that client stays connected.

Suggested fix (cluster.py / codec.py, owned by another helper now): pack each socket's
description separately in the FETCH_SOCKETS handler and replace a value the codec refuses
(e.g. pack `handshake.auth` / `data` through a fallback that turns datetimes into ISO text
or msgpack Timestamps and out-of-range ints into floats/strings, or leave that one socket's
auth/data out with a report), so one socket can never sink the answer of its server.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import msgpack

from .redteam_support import Raw, rt_procs, schema  # noqa: F401  (fixtures)


class MsgpackRaw:
    """A raw msgpack-parser client over WebSocket (binary Socket.IO packets)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.acks = 0
        self.reply: Any = None

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str, auth: Any = None) -> MsgpackRaw:
        ws = await session.ws_connect(url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket")
        raw = cls(ws)
        opening = await ws.receive(10)
        assert str(opening.data).startswith("0"), opening
        packet: dict[str, Any] = {"type": 0, "nsp": "/"}
        if auth is not None:
            packet["data"] = auth
        await ws.send_bytes(msgpack.packb(packet))
        raw.reply = await raw.packet()
        return raw

    async def packet(self, timeout: float = 10.0) -> Any:
        while True:
            msg = await self.ws.receive(timeout)
            if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "2":
                await self.ws.send_str("3")
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                return msgpack.unpackb(msg.data, strict_map_key=False)
            return f"<{msg.type.name}>"

    async def call(self, *args: Any, timeout: float = 10.0) -> Any:
        self.acks += 1
        await self.ws.send_bytes(msgpack.packb({"type": 2, "nsp": "/", "data": list(args), "id": self.acks}))
        while True:
            p = await self.packet(timeout)
            if isinstance(p, dict) and p.get("type") == 3 and p.get("id") == self.acks:
                return p["data"]
            assert not isinstance(p, str), f"connection ended: {p}"


async def test_msgpack_date_in_auth_breaks_fetch_sockets_elsewhere(rt_procs: Any, monkeypatch: Any) -> None:  # noqa: F811
    monkeypatch.setenv("SIOPG_TEST_PARSER", "msgpack")
    a, b = await rt_procs("A"), await rt_procs("B")
    async with aiohttp.ClientSession() as s:
        victim = await MsgpackRaw.open(s, b.url)
        date = msgpack.ExtType(0, (1234).to_bytes(8, "big"))  # a JS Date, as notepack sends it
        attacker = await MsgpackRaw.open(s, a.url, {"when": date})
        assert attacker.reply["type"] == 0, attacker.reply
        (answer,) = await victim.call("fetch")
        assert "ids" in answer, answer
        assert attacker.reply["data"]["sid"] in answer["ids"]


async def test_huge_int_in_auth_breaks_fetch_sockets_elsewhere(rt_procs: Any) -> None:  # noqa: F811
    a, b = await rt_procs("A"), await rt_procs("B")
    async with aiohttp.ClientSession() as s:
        victim = await Raw.open(s, b.url)
        attacker = await Raw.open(s, a.url, '40{"n":' + "9" * 30 + "}")
        assert attacker.reply.startswith("40{"), attacker.reply
        answer = await victim.call('["fetch"]')
        assert "ids" in answer[0], answer
        assert json.loads(attacker.reply[2:])["sid"] in answer[0]["ids"]
