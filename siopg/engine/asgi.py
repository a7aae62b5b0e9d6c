"""ASGI binding: the same engine core behind an ASGI 3 app (Starlette, FastAPI, uvicorn).

Slower than the aiohttp binding (every frame is one ``websocket.send`` event and a send task
per WebSocket drains them), same protocol behaviour. Requests outside the engine path go to
`other_app` (or get a 404); lifespan events go to `other_app`, or are answered here (the
shutdown closes the engine). SIGTERM / SIGINT close it earlier (see `on_exit_signals`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from .errors import EngineError
from .message import EncodedPacket
from .request import RequestInfo, header_name
from .server import EngineServer, HttpReply, WsClosed, now_ms
from .traffic import Traffic

# ASGI's own types: scopes and messages are dicts of arbitrary values by the spec.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("siopg.engine")


EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_exit_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` on `loop` when SIGTERM or SIGINT arrives, then the handler already installed.

    An ASGI server (uvicorn) stops by waiting for the requests in flight before it sends
    lifespan.shutdown, and a parked long-poll GET is in flight until its ping interval ends
    (25 s): the engine must hear of the signal itself to answer those polls at once. The
    server's own handler still runs (chained), so its shutdown is unchanged. Returns a function
    that puts the previous handlers back. Outside the main thread (signals cannot be
    handled there) or for a handler that is not Python's, nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    installed: dict[int, Any] = {}
    for sig in EXIT_SIGNALS:
        previous = signal.getsignal(sig)
        if not callable(previous):  # SIG_DFL / SIG_IGN / not set from Python: leave it alone
            continue

        def chained(signum: int, frame: Any, previous: Callable[[int, Any], Any] = previous) -> None:
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:  # the loop is closed: nothing of ours to stop
                pass
            previous(signum, frame)

        signal.signal(sig, chained)
        installed[sig] = (previous, chained)

    def restore() -> None:
        for sig, (previous, chained) in installed.items():
            if signal.getsignal(sig) is chained:  # nobody replaced ours since
                signal.signal(sig, previous)
        installed.clear()

    return restore


class AsgiWsWriter:
    """Queues frames for one WebSocket; a single sender task turns them into events."""

    def __init__(self, send: Send, traffic: Traffic | None = None) -> None:
        self._send = send
        self._traffic = traffic or Traffic()
        self._pending: list[EncodedPacket] = []
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._close_code = 1000
        self.task = asyncio.ensure_future(self._run())

    def write_packets(self, packets: Sequence[EncodedPacket]) -> int:
        if self._closed:
            return 0
        self._pending.extend(packets)
        size = sum(p.size for p in packets)
        self._pending_bytes += size
        self._traffic.bytes_out += size
        self._wake.set()
        return self._pending_bytes

    def buffer_size(self) -> int:
        return self._pending_bytes

    @property
    def closing(self) -> bool:
        return self._closed

    def close(self, code: int = 1000) -> None:
        """Send what is queued, then close with `code` (1009: a message was too big)."""
        if not self._closed:
            self._closed = True
            self._close_code = code
            self._wake.set()

    async def _run(self) -> None:
        send = self._send
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    batch, self._pending = self._pending, []
                    for packet in batch:
                        self._pending_bytes -= packet.size
                        payload = packet.ws_payload()
                        if isinstance(payload, str):
                            await send({"type": "websocket.send", "text": payload})
                        else:
                            await send({"type": "websocket.send", "bytes": payload})
                if self._closed:
                    await send({"type": "websocket.close", "code": self._close_code})
                    return
        except Exception:  # noqa: BLE001 - the connection is gone; the receive loop reports it
            self._pending = []
            self._pending_bytes = 0


def _request_info(scope: Scope, method: str) -> RequestInfo:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = header_name(raw_name)
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    qs = scope.get("query_string", b"").decode("latin-1")
    client = scope.get("client")
    path = scope.get("path", "")
    return RequestInfo(
        headers=headers,
        query=dict(parse_qsl(qs, keep_blank_values=True)),
        remote_address=client[0] if client else None,
        url=path + ("?" + qs if qs else ""),
        secure=scope.get("scheme") in ("https", "wss"),
        issued=now_ms(),
        method=method,
    )


class EngineASGIApp:
    """ASGI 3 application serving the engine path; other paths go to `other_app`.

    It builds on the framework-neutral :class:`~siopg.engine.server.EngineServer`, which
    never imports this module."""

    def __init__(self, server: EngineServer, other_app: ASGIApp | None = None) -> None:
        self.server = server
        self.other_app = other_app
        self._prefix = server.options.path.rstrip("/")

    def _is_engine_path(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        return any(candidate.rstrip("/") == self._prefix for candidate in (path, root + path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            if self.other_app is not None:
                await self.other_app(scope, receive, send)
            else:
                await self._lifespan(receive, send)
            return
        if not self._is_engine_path(scope):
            if self.other_app is not None:
                await self.other_app(scope, receive, send)
            elif kind == "http":
                await _send_reply(send, HttpReply(404, b"Not Found", [("Content-Type", "text/plain")]))
            else:
                await send({"type": "websocket.close", "code": 1000})
            return
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.server.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = _request_info(scope, scope.get("method", "GET"))

        async def read_body(limit: int) -> bytes | None:
            buf = bytearray()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionError("client went away")
                buf += message.get("body", b"")
                if len(buf) > limit:
                    return None
                if not message.get("more_body", False):
                    return bytes(buf)

        # A polling GET may stay parked for a while: watch its connection (the next receive()
        # after the empty body is http.disconnect), so its answer is never sent into a
        # connection that is gone (the server would drop it silently).
        gone = False
        watcher: asyncio.Task[None] | None = None
        if info.method == "GET" and "sid" in info.query:

            async def watch() -> None:
                nonlocal gone
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone = True

            watcher = asyncio.ensure_future(watch())
        try:
            reply = await self.server.handle_http(info, read_body, lambda: not gone)
            sent = handed = False  # handed: the body was given to the server to send
            try:
                if reply.undelivered is not None and watcher is not None:
                    # the server silently drops a reply to a connection it saw close: let the
                    # watcher see a disconnect that is already queued (after the reply,
                    # receive() says http.disconnect anyway, so it cannot tell afterwards)
                    await asyncio.sleep(0)
                if not gone:
                    if reply.close:  # the body was not read to its end
                        reply.headers.append(("Connection", "close"))
                    await _send_head(send, reply)
                    handed = True
                    await _send_body(send, reply)
                    sent = True
            except Exception as exc:  # noqa: BLE001 - the connection broke while we wrote
                log.debug("engine reply not written: %r", exc)
            finally:
                if not sent:
                    # after the body was handed over the client may have it: never twice
                    report = reply.interrupted if handed else reply.undelivered
                    if report is not None:
                        report()
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        info = _request_info(scope, "GET")
        server = self.server
        try:
            socket, is_new = await server.accept_websocket(info)
        except EngineError as err:
            reply = server.error_reply(err, info.headers)
            if "websocket.http.response" in scope.get("extensions", {}):
                await send(
                    {
                        "type": "websocket.http.response.start",
                        "status": reply.status,
                        "headers": [(k.lower().encode(), v.encode()) for k, v in reply.headers],
                    }
                )
                await send({"type": "websocket.http.response.body", "body": reply.body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        headers = server.handshake_headers(socket) if is_new else []
        try:
            await send(
                {
                    "type": "websocket.accept",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
                }
            )
        except Exception:
            server.abandon(socket, is_new)
            raise
        writer = AsgiWsWriter(send, server.traffic)
        limit = server.options.max_http_buffer_size

        async def next_frame() -> str | bytes:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                # the bound is in bytes (as aiohttp's max_msg_size): a text message of
                # `limit` characters may be up to 4x as many UTF-8 bytes; close 1009
                if len(data) > limit or (
                    isinstance(data, str) and len(data) * 4 > limit and not data.isascii()
                    and len(data.encode("utf-8", "surrogatepass")) > limit
                ):
                    writer.close(1009)
                    raise WsClosed("message too big")
                return data
            raise WsClosed(None)

        try:
            await server.run_websocket(socket, is_new, writer, next_frame)
        finally:
            writer.close()
            try:
                await asyncio.wait_for(asyncio.shield(writer.task), 1.0)
            except Exception:  # noqa: BLE001 - timed out or failed: stop the sender either way
                writer.task.cancel()


async def _send_reply(send: Send, reply: HttpReply) -> None:
    await _send_head(send, reply)
    await _send_body(send, reply)


async def _send_head(send: Send, reply: HttpReply) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    if not any(k == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})


async def _send_body(send: Send, reply: HttpReply) -> None:
    await send({"type": "http.response.body", "body": reply.body})
