"""Shared pieces of the red-team tests: `siopg serve` processes of tests/hostile/apps/
redteam_app.py over a fresh schema of the test Postgres, and a raw WebSocket client that
can send what the official client never would (lone surrogates, forged pids, ...)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pg.conftest import schema  # noqa: F401  (fixture re-exported)

APP = Path(__file__).resolve().parent / "apps" / "redteam_app.py"
ROOT = Path(__file__).resolve().parents[2]


class RedteamProcess:
    """One `siopg serve redteam_app.py:io [extra]` process on a free port, log in a file."""

    def __init__(self, dsn: str, schema: str, name: str, *extra: str) -> None:  # noqa: F811
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"siopg-rt-{name}-", suffix=".log", delete=False)  # noqa: SIM115 - kept open for the child
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SIOPG_TEST_DATABASE_URL": dsn,
               "SIOPG_TEST_SCHEMA": schema, "SIOPG_NODE_NAME": name}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "siopg", "serve", f"{APP}:io", "--host", "127.0.0.1",
             "--port", str(self.port), *extra],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )

    def logs(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    async def ready(self, timeout: float = 30.0) -> RedteamProcess:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as s:
            while loop.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}")
                try:
                    async with s.get(f"{self.url}/socket.io/?EIO=4&transport=polling") as r:
                        if (await r.read()).startswith(b"0{"):
                            return self
                except (OSError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready:\n{self.logs()}")

    async def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        return self.proc.returncode


@pytest.fixture
async def rt_procs(pg_dsn: str, schema: str):  # type: ignore[no-untyped-def]  # noqa: F811
    """`await rt_procs("A", *extra_args)`: a ready redteam_app process on the test's schema."""
    started: list[RedteamProcess] = []

    async def start(name: str, *extra: str) -> RedteamProcess:
        p = RedteamProcess(pg_dsn, schema, name, *extra)
        started.append(p)
        return await p.ready()

    yield start
    for p in started:
        await p.stop()
        os.unlink(p.log.name)


class Raw:
    """A raw Engine.IO/Socket.IO client over WebSocket; packets are sent as written."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.acks = 0
        self.events: list[str] = []
        self.reply = ""

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str, connect: str = "40") -> Raw:
        """Engine.IO handshake, then send `connect` (a raw CONNECT packet) and keep its reply."""
        ws = await asyncio.wait_for(
            session.ws_connect(url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"), 10
        )
        raw = cls(ws)
        opening = await raw.recv()
        assert opening.startswith("0"), opening
        await ws.send_str(connect)
        raw.reply = await raw.packet()
        return raw

    async def recv(self, timeout: float = 10.0) -> str:
        msg = await self.ws.receive(timeout)  # (not wait_for: cancelling a closing receive can hang)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return f"<{msg.type.name}>"
        return str(msg.data)

    async def packet(self, timeout: float = 10.0) -> str:
        """The next Socket.IO packet (pings answered on the way), within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            left = end - loop.time()
            if left <= 0:
                raise TimeoutError
            data = await self.recv(left)
            if data == "2":
                await self.ws.send_str("3")
                continue
            return data

    async def call(self, args_json: str, timeout: float = 10.0) -> Any:
        """Send EVENT `args_json` (raw JSON array text) with an ack id; return the ack's args."""
        self.acks += 1
        head = f"43{self.acks}"
        await self.ws.send_str(f"42{self.acks}{args_json}")
        while True:
            data = await self.packet(timeout)
            if data.startswith(head) and data[len(head):len(head) + 1] == "[":
                return json.loads(data[len(head):])
            self.events.append(data)
