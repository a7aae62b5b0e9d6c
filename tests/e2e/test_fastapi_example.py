"""examples/fastapi_app.py under uvicorn, as the README tells a newcomer to run it.

It serves its FastAPI route and Socket.IO side by side; python-socketio's client works with
the handler the README shows for recovery's offset argument; and SIGTERM stops uvicorn at
once with polling clients connected (their parked GETs used to hold it for the 25 s ping
interval: uvicorn waits for requests in flight before it sends lifespan.shutdown).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from procs import wait_or_kill

from .conftest import ROOT, _free_port

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


class Uvicorn:
    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", str(self.port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, "uvicorn exited"
            try:
                self.get("/hello")
                return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@pytest.fixture
def uvicorn_app() -> Iterator[Uvicorn]:
    server = Uvicorn()
    try:
        server.wait_ready()
        yield server
    finally:
        wait_or_kill(server.proc, 0)  # killed unless a test stopped it already


async def test_the_readme_handler_gets_events_with_their_offset(uvicorn_app: Uvicorn, make_client: Any) -> None:
    client = await make_client(uvicorn_app.url, ["polling"])
    got: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()

    # the README's snippet: with recovery on, every event carries its offset as a last argument
    assert "async def on_chat(msg, offset=None):" in (ROOT / "README.md").read_text()
    @client.on("chat")
    async def on_chat(msg: Any, offset: Any = None) -> None:
        got.put_nowait((msg, offset))

    assert await client.call("chat", "hello", timeout=5) == "delivered"
    msg, offset = await asyncio.wait_for(got.get(), 5)
    assert msg == {"from": client.get_sid("/"), "text": "hello"}
    assert isinstance(offset, str) and offset
    assert uvicorn_app.get("/hello") == {"sockets": 1}  # the FastAPI route, beside Socket.IO
    msg, _ = await asyncio.wait_for(got.get(), 5)
    assert msg == {"from": "http", "text": "hello from FastAPI"}


async def test_sigterm_stops_uvicorn_at_once_with_polling_clients(uvicorn_app: Uvicorn, make_client: Any) -> None:
    gone: list[asyncio.Event] = []
    for _ in range(5):
        client = await make_client(uvicorn_app.url, ["polling"])
        event = asyncio.Event()
        client.on("disconnect", lambda *args, event=event: event.set())
        gone.append(event)
    # each client polls again as soon as its connect completes: their GETs are parked now
    started = time.monotonic()
    uvicorn_app.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(uvicorn_app.proc.wait, 10)
    took = time.monotonic() - started
    assert took < 3.0, f"uvicorn took {took:.1f}s to stop"
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in gone)), 5)
