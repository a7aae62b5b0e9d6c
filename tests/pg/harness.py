"""In-process cluster harness: siopg servers sharing one Postgres schema, and a switching proxy.

Each `Node` is a real `siopg.Server` with its own `PostgresAdapter` (its own LISTEN connection,
pool and server id) served by aiohttp on a free port, so two nodes in one process behave like
two processes talking through Postgres. `SwitchProxy` is a tiny TCP load balancer: new
connections go to whichever node it currently points at, so a client that reconnects after a
drop lands on another node, exactly like behind a real balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable

from aiohttp import web

import siopg
from siopg.adapter.postgres import PostgresAdapter


def install_app(io: siopg.Server, name: str) -> None:
    """The test app every node serves."""

    @io.on("connection")
    async def on_connection(socket: Any) -> None:
        auth = socket.handshake.auth or {}
        rooms = auth.get("rooms")
        if isinstance(rooms, list) and not socket.recovered:
            socket.join([str(r) for r in rooms])
        if not socket.recovered:
            socket.data = {"node": name, "tag": auth.get("tag")}

        @socket.on("join")
        def join(room: str, ack: Any = None) -> None:
            socket.join(room)
            if ack:
                ack(sorted(socket.rooms))

        @socket.on("whereami")
        def whereami(ack: Any = None) -> None:
            if ack:
                ack(name)

    @io.on("whoami")
    def whoami(*args: Any, ack: Any = None) -> None:
        if ack:
            ack({"node": name, "args": list(args)})


class Node:
    def __init__(
        self,
        dsn: str,
        schema: str,
        name: str,
        *,
        recovery: bool = True,
        setup: Callable[[siopg.Server, str], None] = install_app,
        **adapter_options: Any,
    ) -> None:
        options = {"heartbeat_interval": 0.5, "heartbeat_timeout": 2.5, "request_timeout": 3.0, **adapter_options}
        self.errors: list[BaseException] = []
        self.factory = PostgresAdapter(dsn, schema=schema, error_handler=self.errors.append, **options)
        self.io = siopg.Server(
            adapter=self.factory,
            connection_state_recovery=siopg.Recovery(max_disconnection_duration=60.0) if recovery else None,
        )
        self.name = name
        setup(self.io, name)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def adapter(self, nsp: str = "/") -> Any:
        return self.io.of(nsp).adapter

    async def start(self) -> "Node":
        self._runner = web.AppRunner(self.io.aiohttp_app(), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()  # on_shutdown: io.close() -> adapters close


class SwitchProxy:
    """Forward each new TCP connection to the current `target`: a loopback TCP port, or the
    path of a Unix socket (how an embedded pgserver listens)."""

    def __init__(self, target: int | str) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "SwitchProxy":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if isinstance(self.target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.target)
            else:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        state = self._connection_state()
        for src, dst, to_client in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.ensure_future(self._pipe(src, dst, to_client, state))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _connection_state(self) -> Any:
        """Per-connection state handed to `_forward` (subclasses that inspect traffic use it)."""
        return None

    def _forward(self, data: bytes, to_client: bool, state: Any) -> bytes | None:
        """What to pass on of `data` (None: swallow it). A plain proxy passes everything."""
        return data

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, to_client: bool, state: Any) -> None:
        try:
            while data := await src.read(65536):
                out = self._forward(data, to_client, state)
                if out is None:
                    continue
                dst.write(out)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()
            self._writers.discard(dst)

    def cut_all(self) -> None:
        """Drop every open connection (a network blip for every client)."""
        for w in list(self._writers):
            w.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut_all()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll `predicate` (sync or async) until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        await asyncio.sleep(interval)


class ServerProcess:
    """`python -m siopg serve tests/pg/apps/cluster_app.py:io` on a free port, log to a file."""

    def __init__(self, dsn: str, schema: str, name: str, env: dict[str, str] | None = None) -> None:
        import os
        import socket as _socket
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        with _socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"
        app = Path(__file__).parent / "apps" / "cluster_app.py"
        root = Path(__file__).resolve().parents[2]
        self.log = tempfile.NamedTemporaryFile(prefix=f"siopg-pg-{name}-", suffix=".log", delete=False)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SIOPG_TEST_DATABASE_URL": dsn,
               "SIOPG_TEST_SCHEMA": schema, "SIOPG_NODE_NAME": name, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "siopg", "serve", f"{app}:io", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=root, stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )

    def logs(self) -> str:
        from pathlib import Path

        return Path(self.log.name).read_text(errors="replace")

    async def ready(self, timeout: float = 20.0) -> "ServerProcess":
        import urllib.request

        deadline = asyncio.get_running_loop().time() + timeout
        probe = f"{self.url}/socket.io/?EIO=4&transport=polling"
        while asyncio.get_running_loop().time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                body = await asyncio.to_thread(lambda: urllib.request.urlopen(probe, timeout=1).read())
                if body.startswith(b"0{"):
                    return self
            except OSError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready:\n{self.logs()}")

    async def stop(self) -> int:
        """SIGTERM (a clean stop); returns the exit code."""
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the process dies without a word."""
        self.proc.kill()
        self.proc.wait()
