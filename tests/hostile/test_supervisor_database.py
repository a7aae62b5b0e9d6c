"""Fault 1 (part): workers started while Postgres is unreachable wait for it, never crash-loop.

Real processes and a real Postgres behind a TCP port the test opens and closes: the
supervisor is started before the port opens; later a worker is killed while the port is
closed. Its replacement must wait (not ready: /readyz 1/2, no connection queued to it) and
become ready once the database is back, with exactly one restart of its slot.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading

from pg.harness import SwitchProxy
from pg.test_blips import _upstream, _via

from hostile.supervisor_helpers import (  # noqa: F401
    DYNAMIC_APP,
    free_port,
    http_raw,
    private_database,
    supervisors,
)


class FixedPortProxy:
    """SwitchProxy on a port chosen in advance, opened and closed (all connections cut) at will."""

    def __init__(self, port: int, target: int | str) -> None:
        self.port = port
        self.proxy = SwitchProxy(target)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def open(self) -> None:
        async def go() -> None:
            self.proxy._server = await asyncio.start_server(self.proxy._handle, "127.0.0.1", self.port)
            self.proxy.port = self.port

        self._run(go())

    def close(self) -> None:
        async def go() -> None:
            await self.proxy.close()
            self.proxy._server = None

        self._run(go())

    def shutdown(self) -> None:
        if self.proxy._server is not None:
            self.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def _readyz(port: int) -> bytes:
    return http_raw(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")


def test_workers_wait_for_an_unreachable_database_without_crash_looping(supervisors, private_database, tmp_path):  # noqa: F811 - fixtures
    # through a proxy to the test's Postgres: a TCP port, or the embedded pgserver's Unix socket
    proxy = FixedPortProxy(free_port(), _upstream(private_database))
    dsn = _via(private_database, proxy.port)
    app = tmp_path / "app.py"
    app.write_text(DYNAMIC_APP)  # a siopg.Server: the worker gives it the Postgres adapter
    try:
        # 1. the database is unreachable when `siopg serve` starts: it waits, then serves
        sv = supervisors(f"{app}:io", 2, "--database-url", dsn)
        sv.wait_log(r"database unreachable \(attempt 2", 30)
        proxy.open()
        sv.wait_serving(60)
        assert b"ready: 2/2" in _readyz(sv.port)
        # 2. a worker restarted during an outage waits for the database, not ready meanwhile
        proxy.close()
        mark = len(sv.lines)
        os.kill(sv.ready_workers()[1], signal.SIGKILL)
        sv.wait_log(r"worker 3 \(slot 0, pid \d+\) is waiting for the database; not ready", 30, start=mark)
        sv.wait_log(r"worker 3: database unreachable \(attempt 3", 30, start=mark)
        assert b"ready: 1/2" in _readyz(sv.port)
        for _ in range(4):  # new sessions go to the ready worker, none waits on the other
            answer = http_raw(sv.port, b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 ") and b'"sid":"2.' in answer, answer[:300]
        proxy.open()
        sv.wait_log(r"worker 3 ready \(slot 0", 30, start=mark)
        assert b"ready: 2/2" in _readyz(sv.port)
        restarts = [line for line in sv.lines[mark:] if "restarting slot" in line]
        assert len(restarts) == 1 and "failure 1 in a row" in restarts[0], restarts
        assert not [line for line in sv.lines[mark:] if re.search(r"worker [3-9]\d* .*died unexpectedly", line)]
        assert sv.proc.poll() is None
    finally:
        proxy.shutdown()
