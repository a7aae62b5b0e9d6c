"""siopg.Emitter (no server in the process) and the schema check at server start."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

import siopg
from siopg.adapter.postgres import SchemaError

from .harness import Node, eventually


async def test_emitter_reaches_every_server(nodes: Any, js: Any, pg_dsn: str, schema: str) -> None:
    a, b = await nodes("A"), await nodes("B")
    clients = []
    for node, label in ((a, "ca"), (b, "cb")):
        c = js.client(label)
        state = await c.connect(node.url, transports=["websocket"], auth={"rooms": ["r"]})
        c.sid = state["id"]
        await c.on("ev", "all")
        clients.append(c)
    seen: list[Any] = []
    b.io.on("tell", lambda *args: seen.append(args))

    def from_plain_code() -> int:  # a Celery task or a Django view: no event loop running
        emitter = siopg.Emitter(pg_dsn, schema=schema)
        emitter.server_side_emit("tell", 1)
        return emitter.to("r").emit("ev", {"bin": b"\x00\x01"}, [1, 2])

    offset = await asyncio.to_thread(from_plain_code)
    assert isinstance(offset, int)
    async with siopg.Emitter(pg_dsn, schema=schema) as emitter:
        await emitter.emit("all", "everyone")
        await emitter.to("r").except_("r").emit("ev", "nobody")
        await emitter.in_("r").sockets_join("joined-by-emitter")
    for c in clients:
        got = await c.wait_for("ev")
        assert got[0] == [{"bin": b"\x00\x01"}, [1, 2], str(offset)]
        assert (await c.wait_for("all"))[0][:-1] == ["everyone"]
    await eventually(lambda: seen == [(1,)])
    for node, c in ((a, clients[0]), (b, clients[1])):
        await eventually(lambda: c.sid in node.adapter().rooms.get("joined-by-emitter", ()))
    await asyncio.sleep(0.1)
    assert all(len(c.received("ev")) == 1 for c in clients)
    with pytest.raises(ValueError):
        siopg.Emitter(pg_dsn, schema=schema).emit("disconnect")
    with pytest.raises(ValueError):
        siopg.Emitter(pg_dsn, schema=schema).of("no-slash")


async def test_server_start_with_schema_behind(pg_dsn: str) -> None:
    node = Node(pg_dsn, "siopg_missing_" + secrets.token_hex(3), "A")
    with pytest.raises(SchemaError, match="siopg migrate --database-url"):
        await node.adapter().init()
    await node.io.close()
