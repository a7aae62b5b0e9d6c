"""`io.close()` leaves nothing running: no task, no timer, no open Engine.IO connection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

import siopg

from .helpers import start_app, wait_until



def live_timers(loop: asyncio.AbstractEventLoop) -> list[asyncio.TimerHandle]:
    scheduled = getattr(loop, "_scheduled", None)
    assert scheduled is not None, "this test needs the pure-Python event loop to see timers"
    return [h for h in scheduled if not h.cancelled()]


async def test_close_with_websocket_and_polling_clients_csr_and_pending_acks() -> None:
    loop = asyncio.get_running_loop()
    baseline_tasks = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    baseline_timers = set(live_timers(loop))

    io = siopg.Server(connection_state_recovery=siopg.Recovery(), ping_interval=0.2, ping_timeout=5)
    sockets: list[siopg.Socket] = []
    io.on("connection", sockets.append)
    io.of("/other").on("connection", sockets.append)
    runner, port = await start_app(io.aiohttp_app())
    url = f"http://127.0.0.1:{port}"

    clients = []
    gate = asyncio.Event()
    for transports in (["websocket"], ["polling"], ["polling", "websocket"]):
        client = socketio.AsyncClient(reconnection=False)

        async def never(*args: Any) -> Any:  # answers only after the server is gone
            await gate.wait()
            return "late"

        client.on("never", never, namespace="/")
        client.on("never", never, namespace="/other")
        await client.connect(url, transports=transports, namespaces=["/", "/other"], wait_timeout=5)
        clients.append(client)
    await wait_until(lambda: len(sockets) == 6, timeout=5.0)
    dropped = socketio.AsyncClient(reconnection=False)  # leaves a persisted CSR session behind
    await dropped.connect(url, transports=["websocket"], wait_timeout=5)
    await wait_until(lambda: len(sockets) == 7, timeout=5.0)
    await dropped.eio.disconnect(abort=True)
    await wait_until(lambda: sockets[6].disconnected, timeout=5.0)

    # acks of every kind, all still waiting when the server closes
    broadcast = asyncio.ensure_future(io.timeout(30).emit_with_ack("never"))
    timed = asyncio.ensure_future(sockets[1].timeout(30).emit_with_ack("never"))
    untimed = asyncio.ensure_future(sockets[2].emit_with_ack("never"))
    callbacks: list[Any] = []
    io.of("/other").timeout(30).emit("never", callback=lambda err, res: callbacks.append(err))
    await sockets[3].emit("never", callback=lambda *a: callbacks.append(a))
    await io.emit("plain", 1)  # recorded in the CSR log
    await asyncio.sleep(0.3)  # a ping round over every transport
    assert all(s.connected for s in sockets[:6])
    engine = io.engine
    assert len(engine.sockets) == 3

    await asyncio.wait_for(io.close(), 10)

    for fut in (broadcast, timed, untimed):
        with pytest.raises(siopg.AckTimeoutError):
            await fut
    assert len(callbacks) == 1 and isinstance(callbacks[0], siopg.AckTimeoutError)
    assert engine.sockets == {} and io._clients == {}
    assert all(s.disconnected for s in sockets)
    assert all(not nsp._open_broadcasts and not nsp._broadcast_acks for nsp in io.namespaces.values())
    assert all(s.acks == {} for s in sockets)
    assert not engine._ws_tasks and not engine._bg_tasks
    assert len(io._tasks) == 0
    # siopg itself has nothing scheduled any more, with the clients still alive
    assert set(live_timers(loop)) - baseline_timers <= {h for h in live_timers(loop) if _foreign(h)}
    siopg_tasks = [
        t for t in asyncio.all_tasks() - baseline_tasks
        if t is not asyncio.current_task() and "siopg" in repr(t.get_coro())
    ]
    assert siopg_tasks == []

    gate.set()
    await wait_until(lambda: all(not c.connected for c in clients), timeout=5.0)
    for client in (*clients, dropped):
        await client.disconnect()
    await runner.cleanup()
    await asyncio.sleep(0.05)
    leftover = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} - baseline_tasks
    # python-socketio's clients wind their loops down lazily (up to a ping period): ignore them
    server_side = [t for t in leftover if not _client_task(t)]
    assert server_side == []
    assert [h for h in set(live_timers(loop)) - baseline_timers if not _foreign(h)] == []


def _client_task(task: asyncio.Task[Any]) -> bool:
    stack = task.get_stack()
    text = repr(task.get_coro()) + "".join(repr(f.f_code) for f in stack)
    return "engineio/async_client" in text or "socketio/async_client" in text or "Queue.get" in text


def _foreign(handle: asyncio.TimerHandle) -> bool:
    """A timer that belongs to the test's clients or aiohttp, not to siopg."""
    callback = getattr(handle, "_callback", None)
    return "siopg" not in repr(getattr(callback, "__self__", callback)) and "siopg" not in repr(
        getattr(callback, "__module__", "")
    )
