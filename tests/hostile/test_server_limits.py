"""Finding 7 of issue 7 (unbounded growth), server side: a client cannot create dynamic
namespaces without limit. One raw connection (what the reported attack used: 5000 CONNECTs
in one request) against a real `siopg serve` process with the default limit (1000)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import pytest
from e2e.conftest import ServerProcess

from .server_fixtures import HOSTILE_APPS, serve


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    yield from serve(HOSTILE_APPS / "server_recovery.py", "--metrics")


async def _connect_all(ws: aiohttp.ClientWebSocketResponse, names: list[str]) -> dict[str, str]:
    """CONNECT to every name in one burst; the reply packet per namespace."""
    for name in names:
        await ws.send_str(f"40{name},")
    replies: dict[str, str] = {}
    while len(replies) < len(names):
        msg = await ws.receive(timeout=10)
        if msg.data == "2":
            await ws.send_str("3")
            continue
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        nsp, _, body = msg.data[2:].partition(",")
        replies[nsp] = msg.data[:2] + body
    return replies


async def test_dynamic_namespaces_are_bounded_by_default(server: ServerProcess) -> None:
    limit = 1000  # the documented default of max_dynamic_namespaces
    per_connection = 50  # and of max_namespaces_per_connection: the attack needs many connections
    total = limit + 5
    names = [f"/dyn-{i}" for i in range(total)]
    async with aiohttp.ClientSession() as session:
        url = server.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        sockets = []
        replies: dict[str, str] = {}
        for start in range(0, total, per_connection - 2):
            ws = await session.ws_connect(url)
            assert (await ws.receive(timeout=5)).data.startswith("0")
            sockets.append(ws)
            replies.update(await _connect_all(ws, names[start:start + per_connection - 2]))
        accepted = [n for n, r in replies.items() if r.startswith("40")]
        refused = {n: json.loads(r[2:]) for n, r in replies.items() if r.startswith("44")}
        assert len(accepted) == limit and len(refused) == total - limit, (len(accepted), len(refused))
        assert all("Too many namespaces" in r["message"] for r in refused.values()), list(refused.values())[:1]
        # leaving a namespace lets an empty child be forgotten: a new name fits again
        ws = sockets[0]
        await ws.send_str("41/dyn-0,")
        await ws.send_str("40/dyn-99999,")
        while True:
            msg = await ws.receive(timeout=5)
            if msg.data.startswith("4") and "/dyn-99999," in msg.data:
                break
        assert msg.data.startswith("40/dyn-99999,{"), msg.data
        for ws in sockets:
            await ws.close()
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/metrics") as resp:  # served with --metrics
            assert resp.status == 200
            body = await resp.text()
        assert "siopg_dynamic_namespaces_refused_total 5.0" in body, body[-2000:]
        assert f"siopg_dynamic_namespaces {float(limit)}" in body, body[-2000:]
