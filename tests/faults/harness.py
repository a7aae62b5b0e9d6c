"""The fault suite's machinery: a private PostgreSQL, a TCP proxy that can stall or cut, a
real `siopg serve --workers 2`, and a fleet of official JS clients, all owned by the test and
all stopped at the end. Everything here is async so the proxies keep running while a test waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

REPO = Path(__file__).resolve().parents[2]
APP = str(Path(__file__).resolve().parent / "apps" / "ticker_app.py") + ":io"
FLEET_JS = Path(__file__).resolve().parent / "js" / "fleet.js"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """An embedded PostgreSQL (pgserver) in a temp dir: the test may restart it at will."""

    def __init__(self) -> None:
        import pgserver

        self.dir = tempfile.mkdtemp(prefix="siopg-faults-pg-")
        self.server = pgserver.get_server(self.dir, cleanup_mode="stop")
        self.dsn = self.server.get_uri()
        self._user = {"user": self.server.system_user} if getattr(self.server, "system_user", None) else {}

    def upstream(self) -> int | str:
        """Where it listens: a loopback TCP port, or the path of its Unix socket."""
        parts = urlsplit(self.dsn)
        socket_dir = dict(parse_qsl(parts.query)).get("host")
        if socket_dir and socket_dir.startswith("/"):
            found = [s for s in sorted(Path(socket_dir).glob(".s.PGSQL.*")) if not s.name.endswith(".lock")]
            assert found, f"no Postgres socket in {socket_dir}"
            return str(found[0])
        return parts.port or 5432

    def dsn_for(self, database: str) -> str:
        parts = urlsplit(self.dsn)
        return parts._replace(path="/" + database).geturl()

    def restart(self) -> None:
        import pgserver

        pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.server.pgdata, timeout=60, **self._user)

    def stop(self) -> None:
        """Stop it for sure: after a restart the postmaster is not the one pgserver started,
        and its cleanup alone leaves it running."""
        import shutil

        import pgserver

        with contextlib.suppress(Exception):  # already stopped
            pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, timeout=60, **self._user)
        self.server.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


class FaultProxy:
    """TCP proxy to `target` (port or Unix socket path). `stall()` blackholes it: bytes stop
    flowing both ways and new connections hang, as in a network partition; `resume()` lets
    everything flow again (TCP connections survive); `cut_all()` resets every connection;
    `refuse()` resets every new one (the far end is down) until `resume()`."""

    def __init__(self, target: int | str) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = asyncio.Event()
        self._open.set()
        self._refusing = False

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=2048)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall(self) -> None:
        self._open.clear()

    def refuse(self) -> None:
        self._refusing = True

    def resume(self) -> None:
        self._refusing = False
        self._open.set()

    def cut_all(self) -> None:
        for w in list(self._writers):
            w.transport.abort()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            await self._open.wait()
            if isinstance(self.target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.target)
            else:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except (OSError, asyncio.CancelledError):
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        self._spawn(self._pipe(reader, up_writer, writer))
        self._spawn(self._pipe(up_reader, writer, up_writer))

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, other: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                await self._open.wait()
                if dst.transport.is_closing():
                    break
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            # one side gone: the other goes too (a reset, as a real middlebox would)
            for w in (dst, other):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.resume()
        self.cut_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


_READY = re.compile(r"worker (\d+) ready \(slot (\d+), pid (\d+)\)")


class Serve:
    """`python -m siopg serve APP --workers N --database-url DSN` on a free port; stderr kept."""

    def __init__(self, dsn: str, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.dsn = dsn
        self.workers = workers
        self.port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="siopg-faults-sv-")
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env["PYTHONPATH"] = os.pathsep.join([str(REPO), self.env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Serve:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "siopg", "serve", APP, "--workers", str(self.workers), "--database-url", self.dsn,
            "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data_dir, "--log-level", "info",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=self.env, cwd=str(REPO),
        )
        self._pump = asyncio.get_running_loop().create_task(self._read())
        await self.wait_log(r"serving .* with \d+ workers", 60)
        await self.wait_for(lambda: len(self.ready_slots()) >= self.workers, 60, "workers ready")
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    def ready_slots(self) -> dict[int, int]:
        """slot -> pid of the newest worker that said it was ready in that slot."""
        out: dict[int, int] = {}
        for line in self.lines:
            if m := _READY.search(line):
                out[int(m[2])] = int(m[3])
        return out

    async def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or (self.proc is not None and self.proc.returncode is not None):
                raise AssertionError(f"{what}: not within {timeout}s; log tail:\n" + "\n".join(self.lines[-40:]))
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def wait_log(self, pattern: str, timeout: float = 30.0, start: int = 0) -> None:
        rx = re.compile(pattern)
        await self.wait_for(lambda: any(rx.search(x) for x in self.lines[start:]), timeout, f"log {pattern!r}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self) -> None:
        import shutil

        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._pump is not None:
            await asyncio.gather(self._pump, return_exceptions=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Fleet:
    """N official socket.io-client instances in one Node process (tests/faults/js/fleet.js)."""

    def __init__(self, url: str, n: int, **opts: Any) -> None:
        self.url, self.n, self.opts = url, n, opts
        self.proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> Fleet:
        env = {**os.environ, "SIOPG_NODE_MODULES": str(REPO / "node_modules")}
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(FLEET_JS), self.url, str(self.n), json.dumps(self.opts),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, limit=1 << 28,
        )
        return self

    async def cmd(self, line: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write((line + "\n").encode())
            await self.proc.stdin.drain()
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise AssertionError(f"the client fleet exited (answering {line!r})")
        return json.loads(raw)

    async def wait_connected(self, timeout: float) -> dict[str, Any]:
        return await self.cmd(f"wait {timeout}", timeout + 10)

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.cmd("exit", 10)
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
