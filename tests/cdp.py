"""Headless Chromium driven over the DevTools protocol (a websocket, no extra packages).

`Chromium.start(tmp)` runs /usr/bin/chromium with --remote-debugging-port=0 and reads the
port it chose from its stderr; `kill()` ends it (and its children: it runs in its own
process group). `Page` is one tab: `navigate`, `evaluate`, `screenshot`, and basic-auth
sign-in answered through the Fetch domain (the way a user types the credentials).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def available() -> bool:
    return os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)


class Chromium:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    @classmethod
    def start(cls, profile: Path, width: int = 1440, height: int = 1000, timeout: float = 20.0) -> Chromium:
        proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        found: list[int] = []
        ready = threading.Event()

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
                if m and not found:
                    found.append(int(m[1]))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or not found:
            cls(proc, 0).kill()
            raise RuntimeError("chromium did not open its DevTools port")
        return cls(proc, found[0])

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    async def page(self, session: aiohttp.ClientSession) -> Page:
        async with session.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        target = next(t for t in targets if t["type"] == "page")
        ws = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        page.start()
        return page


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._credentials: tuple[str, str] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.loaded = asyncio.Event()

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.ws.close()

    async def send(self, method: str, **params: Any) -> Any:
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = fut
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 15)

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._waiting.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                    else:
                        fut.set_result(data.get("result"))
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Page.loadEventFired":
                self.loaded.set()
            elif method == "Fetch.requestPaused":
                request_id = params["requestId"]
                asyncio.get_running_loop().create_task(self.send("Fetch.continueRequest", requestId=request_id))
            elif method == "Fetch.authRequired":
                user, password = self._credentials or ("", "")
                answer = {"response": "ProvideCredentials", "username": user, "password": password}
                if self._credentials is None:
                    answer = {"response": "CancelAuth"}
                asyncio.get_running_loop().create_task(
                    self.send("Fetch.continueWithAuth", requestId=params["requestId"], authChallengeResponse=answer))

    async def sign_in_with(self, user: str, password: str) -> None:
        """Answer the server's basic-auth challenges with these credentials."""
        self._credentials = (user, password)
        await self.send("Fetch.enable", patterns=[{"urlPattern": "*"}], handleAuthRequests=True)

    async def navigate(self, url: str) -> None:
        await self.send("Page.enable")
        self.loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self.loaded.wait(), 15)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(shot["data"])
        await asyncio.to_thread(lambda: (path.parent.mkdir(parents=True, exist_ok=True), path.write_bytes(data)))
