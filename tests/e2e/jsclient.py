"""Drive the official socket.io-client (tests/js/driver.mjs) from asyncio tests.

One node process serves a whole test module (starting node costs ~100 ms); a per-test facade
binds it to the test's event loop and closes every client it made when the test ends, so
nothing leaks between tests. A reader thread owns the process's stdout and hands each JSON
line to the current test's loop, which keeps the process independent of any event loop.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import json
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from js_wire import NOT_TAGGED, b64, decode_tags, encode_tags
from procs import wait_or_kill

DRIVER = Path(__file__).resolve().parents[1] / "js" / "driver.mjs"


class _Undefined:
    """JavaScript's `undefined` as seen through the bridge."""

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = _Undefined()


def _tag(value: Any) -> dict[str, Any] | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bin": b64(bytes(value))}
    if value is UNDEFINED:
        return {"$undef": True}
    return None


def _untag(value: dict[str, Any]) -> Any:
    if value.keys() == {"$bin"}:
        return base64.b64decode(value["$bin"])
    if value.keys() == {"$undef"}:
        return UNDEFINED
    return NOT_TAGGED


def to_wire(value: Any) -> Any:
    """Python value -> bridge JSON (bytes as {"$bin": base64}, UNDEFINED as {"$undef": true})."""
    return encode_tags(value, _tag)


def from_wire(value: Any) -> Any:
    """Bridge JSON -> Python value (bytes for binary)."""
    return decode_tags(value, _untag)


class DriverError(RuntimeError):
    """The driver refused a command (bad op, unknown client, ...)."""


class DriverProcess:
    """The node process; synchronous so it can live in a module-scoped fixture."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["node", str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._lock = threading.Lock()
        self._sink: Callable[[dict[str, Any]], None] | None = None
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                self.stderr_tail.append(f"[bad stdout line] {line.rstrip()}")
                continue
            with self._lock:
                sink = self._sink
            if sink is not None:
                sink(msg)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip())

    def attach(self, sink: Callable[[dict[str, Any]], None] | None) -> None:
        with self._lock:
            self._sink = sink

    def send(self, obj: dict[str, Any]) -> None:
        if self.proc.poll() is not None:
            raise DriverError(f"node driver exited ({self.proc.returncode}): {list(self.stderr_tail)[-20:]}")
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        wait_or_kill(self.proc, 5)


@dataclass
class Event:
    """One event a JS client received (via "on", "any", "ackReply" or "life")."""

    via: str
    event: str
    args: list[Any]


class JsDriver:
    """Per-test asyncio facade over a DriverProcess."""

    _names = itertools.count(1)

    def __init__(self, process: DriverProcess) -> None:
        self.process = process
        self.loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._clients: dict[str, JsClient] = {}
        process.attach(lambda msg: self.loop.call_soon_threadsafe(self._dispatch, msg))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "event":
            client = self._clients.get(msg["client"])
            if client is not None:
                client._record(Event(msg["via"], msg["event"], from_wire(msg["args"])))
            return
        fut = self._pending.pop(msg.get("id"), None)
        if fut is None or fut.done():
            return
        if msg.get("ok"):
            fut.set_result(from_wire(msg.get("result")))
        else:
            fut.set_exception(DriverError(msg.get("error")))

    async def call(self, op: str, reply_timeout: float = 10.0, **fields: Any) -> Any:
        """Send one command and wait for its reply."""
        cid = next(self._ids)
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._pending[cid] = fut
        self.process.send({"id": cid, "op": op, **fields})
        try:
            return await asyncio.wait_for(fut, reply_timeout)
        finally:
            self._pending.pop(cid, None)

    def client(self, label: str = "c") -> JsClient:
        """A new (not yet connected) client with a name unique across the session."""
        name = f"{label}{next(self._names)}"
        client = JsClient(self, name)
        self._clients[name] = client
        return client

    async def aclose(self) -> None:
        try:
            await self.call("closeAll", reply_timeout=5)
        finally:
            self.process.attach(None)
            for fut in self._pending.values():
                fut.cancel()


class JsClient:
    """One socket.io-client Socket living in the node driver."""

    def __init__(self, driver: JsDriver, name: str) -> None:
        self.driver = driver
        self.name = name
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    def _record(self, event: Event) -> None:
        self.events.append(event)

        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        self.driver.loop.create_task(notify())

    async def _call(self, op: str, reply_timeout: float = 10.0, **fields: Any) -> Any:
        return await self.driver.call(op, reply_timeout=reply_timeout, client=self.name, **fields)

    async def connect(
        self,
        url: str,
        wait: bool = True,
        timeout_ms: int = 5000,
        share: JsClient | None = None,
        listen: list[str] | None = None,
        **opts: Any,
    ) -> dict[str, Any]:
        """Connect; returns {id, connected, recovered, transport, engineId, error}.

        `share`: open this namespace on that client's Engine.IO connection (multiplexing).
        `listen`: events to stream, registered before connecting (nothing can be missed)."""
        return await self._call(
            "connect", reply_timeout=timeout_ms / 1000 + 2, url=url, opts=to_wire(opts), wait=wait,
            timeout=timeout_ms, share=share.name if share else None, listen=listen or [],
        )

    async def reconnect(self, timeout_ms: int = 5000) -> dict[str, Any]:
        """socket.connect() again after a drop (the client sends its pid/offset if it has one)."""
        return await self._call("reconnect", reply_timeout=timeout_ms / 1000 + 2, timeout=timeout_ms)

    async def emit(self, event: str, *args: Any) -> None:
        await self._call("emit", event=event, args=to_wire(list(args)), ack=False)

    async def emit_ack(self, event: str, *args: Any, timeout_ms: int = 3000) -> list[Any]:
        """Emit with an ack; returns the ack's arguments, raises TimeoutError on ack timeout."""
        reply = await self._call(
            "emit", reply_timeout=timeout_ms / 1000 + 2, event=event, args=to_wire(list(args)), ack=True, timeout=timeout_ms
        )
        if reply["error"]:
            raise TimeoutError(reply["error"])
        return reply["args"]

    async def call(self, event: str, *args: Any, timeout_ms: int = 3000) -> Any:
        """Emit with an ack that answers one value, and return that value."""
        answer = await self.emit_ack(event, *args, timeout_ms=timeout_ms)
        assert len(answer) == 1, answer
        return answer[0]

    async def on(self, *events: str) -> None:
        for event in events:
            await self._call("on", event=event)

    async def on_any(self) -> None:
        await self._call("onAny")

    async def ack_reply(self, event: str, mode: str = "value", value: list[Any] | None = None, delay_ms: int = 0) -> None:
        """How this client answers `event` when the server asks for an ack."""
        await self._call("ackReply", event=event, mode=mode, value=to_wire(value or []), delay=delay_ms)

    async def close_engine(self) -> None:
        await self._call("closeEngine")

    async def disconnect(self) -> None:
        await self._call("disconnect")

    async def state(self) -> dict[str, Any]:
        return await self._call("state")

    def received(self, event: str, via: str | None = None) -> list[list[Any]]:
        """Arguments of every `event` received so far."""
        return [e.args for e in self.events if e.event == event and (via is None or e.via == via)]

    async def wait_for(self, event: str, count: int = 1, via: str | None = None, timeout: float = 5.0) -> list[list[Any]]:
        """Wait until `event` was received `count` times; returns every occurrence's args."""

        async def enough() -> list[list[Any]]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.received(event, via)) >= count)
            return self.received(event, via)

        try:
            return await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            got = [(e.via, e.event, e.args) for e in self.events]
            raise AssertionError(f"{self.name}: {event!r} x{count} not received in {timeout}s; got {got!r}") from None

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until predicate() (checked on every received event) is true."""

        async def ok() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(ok(), timeout)
