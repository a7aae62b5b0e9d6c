"""Application callbacks go through one helper (siopg.server.callbacks): sync or async alike,
inspected once at registration; acks waiting for an answer are PendingAck objects."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import siopg
from siopg.parser import PacketType
from siopg.server.callbacks import Callback, PendingAck
from siopg.server.testing import FakeClient

from .helpers import settle, wait_until


async def _connected(io: siopg.Server) -> tuple[FakeClient, siopg.Socket]:
    sockets: list[siopg.Socket] = []
    io.on("connection", sockets.append)
    client = FakeClient(io)
    await client.connected()
    await settle()
    return client, sockets[0]


async def test_async_ack_callback_runs(io: siopg.Server) -> None:
    """An `async def` ack callback is awaited (as a server task), not created and dropped."""
    client, socket = await _connected(io)
    got: list[Any] = []

    async def on_ack(*args: Any) -> None:
        await asyncio.sleep(0)
        got.append(args)

    socket.emit("question", callback=on_ack)
    packet = await client.wait_for(lambda p: p.type == PacketType.EVENT)
    assert isinstance(socket.acks[packet.id], PendingAck)
    client.ack(packet.id, "yes", 2)
    await wait_until(lambda: got)
    assert got == [("yes", 2)]
    assert socket.acks == {}


async def test_async_timed_ack_callback_gets_the_timeout(io: siopg.Server) -> None:
    _client, socket = await _connected(io)
    got: list[Any] = []

    async def on_ack(err: Any, *args: Any) -> None:
        got.append((type(err), args))

    socket.timeout(0.01).emit("question", callback=on_ack)
    await wait_until(lambda: got)
    assert got == [(siopg.AckTimeoutError, ())]
    assert socket.acks == {}


async def test_async_broadcast_ack_callback_runs(io: siopg.Server) -> None:
    client, _socket = await _connected(io)
    got: list[Any] = []

    async def on_done(err: Any, responses: Any) -> None:
        got.append((err, responses))

    io.timeout(1).emit("question", callback=on_done)
    packet = await client.wait_for(lambda p: p.type == PacketType.EVENT)
    client.ack(packet.id, "a")
    await wait_until(lambda: got)
    assert got == [(None, ["a"])]


async def test_handlers_are_inspected_once_at_registration(io: siopg.Server) -> None:
    _client, socket = await _connected(io)

    def handler(a: Any, ack: Any) -> None:  # pragma: no cover - never called here
        pass

    socket.on("ev", handler)
    (callback,) = socket._handlers["ev"]
    assert callback.fn is handler and callback.takes_ack and callback.max_positional == 1  # `ack` apart
    socket.off("ev", handler)
    assert socket._handlers["ev"] == []
    with pytest.raises(TypeError, match="must be callable"):
        socket.on("ev", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be callable"):
        io.use("not a function")  # type: ignore[arg-type]


async def test_callback_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    from siopg.server.tasks import TaskSet

    tasks = TaskSet()

    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    async def broken_async(*args: Any) -> None:
        raise RuntimeError("async boom")

    with caplog.at_level(logging.ERROR, logger="siopg.server"):
        Callback(broken, "test handler").fire(tasks, (1,))
        Callback(broken_async, "test async handler").fire(tasks, (1,))
        await tasks.drain()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("error in test handler") for m in messages)
    assert "error in test async handler" in messages
    assert len(tasks) == 0


async def test_trim_drops_undeclared_arguments() -> None:
    from siopg.server.tasks import TaskSet

    got: list[Any] = []
    Callback(lambda reason: got.append(reason)).fire(TaskSet(), ("transport close", "details"), trim=True)
    assert got == ["transport close"]
