"""Fault 5: a failed rolling restart must not orphan a worker.

Real processes: reload with a broken app file -> the new worker dies, the old one keeps its
slot and its sessions, /readyz says 2/2, the slot does not crash-loop; fix the file, reload
again -> every worker is replaced (old pids gone), nothing serves old code.
"""

from __future__ import annotations

import asyncio
import os
import signal

import socketio

from hostile.supervisor_helpers import (  # noqa: F401
    DYNAMIC_APP,
    http_raw,
    private_database,
    supervisors,
    wait_until,
)


def _readyz(port: int) -> bytes:
    return http_raw(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _whoami(url: str) -> dict:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, transports=["websocket"])
    try:
        return await client.call("whoami", timeout=10)
    finally:
        await client.disconnect()


def test_a_failed_reload_keeps_the_old_worker_in_its_slot(supervisors, private_database, tmp_path):  # noqa: F811 - fixtures
    app = tmp_path / "app.py"
    app.write_text(DYNAMIC_APP)
    sv = supervisors(f"{app}:io", 2, "--database-url", private_database, "--grace", "3")
    sv.wait_serving(60)
    old = sv.ready_workers()
    assert sorted(old) == [1, 2]

    async def keep_a_session() -> tuple[socketio.AsyncClient, dict]:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(sv.url, transports=["websocket"])
        return client, await client.call("whoami", timeout=10)

    loop = asyncio.new_event_loop()
    try:
        client, info = loop.run_until_complete(keep_a_session())
        # 1. a broken app file: the new worker of slot 0 dies, the old one stays
        app.write_text("raise RuntimeError('broken app file')\n")
        mark = len(sv.lines)
        sv.signal(signal.SIGHUP)
        sv.wait_log(r"rolling restart: new worker 3 for slot 0 not ready; keeping the old one", 60, start=mark)
        ready = _readyz(sv.port)
        assert b"ready: 2/2 workers" in ready, ready
        assert all(_alive(pid) for pid in old.values())
        assert client.connected
        assert loop.run_until_complete(client.call("whoami", timeout=10)) == info  # same session, same worker
        assert not [line for line in sv.lines[mark:] if "restarting slot" in line], "the slot crash-loops"
        # 2. fixed: the next reload replaces every worker, and no old one is left serving
        app.write_text(DYNAMIC_APP.replace('VERSION = "v1"', 'VERSION = "v2"'))
        mark = len(sv.lines)
        sv.signal(signal.SIGHUP)
        sv.wait_log(r"rolling restart done", 60, start=mark)
        wait_until(lambda: not any(_alive(pid) for pid in old.values()), 20, "the old workers to exit")
        new = {wid: pid for wid, pid in sv.ready_workers().items() if wid not in old}
        assert len(new) == 2 and not set(new.values()) & set(old.values()), new
        ready = _readyz(sv.port)
        assert b"ready: 2/2 workers" in ready, ready
        for _ in range(4):  # new sessions only ever reach new code
            answer = loop.run_until_complete(_whoami(sv.url))
            assert answer["version"] == "v2" and answer["pid"] in new.values(), answer
        loop.run_until_complete(client.disconnect())
    finally:
        loop.close()
    assert sv.proc.poll() is None
