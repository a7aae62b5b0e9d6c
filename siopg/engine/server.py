"""EngineServer: request verification, handshakes and the session table.

The framework-neutral core (engine.io's BaseServer): it imports no web framework. The
bindings build on it and the core never imports them: ``aiohttp_binding.aiohttp_handler``
(aiohttp) and ``asgi.EngineASGIApp`` (ASGI 3) turn their requests into calls of
:meth:`EngineServer.handle_http` (polling and preflight) and
:meth:`EngineServer.accept_websocket` / :meth:`EngineServer.run_websocket` (a WebSocket's
receive loop), and turn the answers back into responses.
"""

from __future__ import annotations

import asyncio
import gzip
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .._log import clip
from ..errors import SiopgError
from .deadlines import DeadlineQueue
from .errors import (
    BadHandshakeMethod,
    BadRequest,
    EngineError,
    Forbidden,
    PayloadTooLarge,
    UnknownSessionId,
    UnknownTransport,
    UnsupportedProtocolVersion,
)
from .message import EncodedPacket
from .options import EngineOptions
from .request import RequestInfo
from .session import SERVER_SHUTTING_DOWN, SessionConfig
from .socket import EngineSocket, FlushBatch, WsWriter
from .traffic import Traffic

__all__ = ["EngineOptions", "EngineServer", "HttpReply", "WsClosed"]

log = logging.getLogger("siopg.engine")

COMPRESSION_THRESHOLD = 1024
_TEXT = "text/plain; charset=UTF-8"


@dataclass(slots=True)
class HttpReply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    # A binding that could not write this reply (its connection was gone) must call this:
    # a poll answer's packets then go back to the session's queue instead of being lost.
    undelivered: Callable[[], None] | None = None
    # A binding whose write broke after the body was handed to the connection must call this
    # instead: the client may have some or all of it, so requeueing could deliver it twice.
    interrupted: Callable[[], None] | None = None
    # Close the connection after this reply (the request body was not read to its end).
    close: bool = False


class WsClosed(SiopgError):
    """Raised by a binding's receive() when its WebSocket is gone (error: why, if it failed)."""

    def __init__(self, error: str | None = None) -> None:
        super().__init__(error or "closed")
        self.error = error


def _invalid_header_value(value: str) -> bool:
    """True if a header value holds characters Node refuses (engine.io's origin check)."""
    return any((c < " " and c != "\t") or c == "\x7f" or ord(c) > 255 for c in value)


class EngineServer:
    """Engine.IO 4 server core. `on_connection(socket)` is called for every new session
    (the layer above may take it as an :class:`~siopg.engine.connection.EngineConnection`)."""

    def __init__(
        self, on_connection: Callable[[EngineSocket], None], options: EngineOptions | None = None
    ) -> None:
        self.on_connection = on_connection
        self.options = options = options or EngineOptions()
        self._config = SessionConfig(
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            upgrade_timeout=options.upgrade_timeout,
            max_http_buffer_size=options.max_http_buffer_size,
            max_buffer_size=options.max_buffer_size,
            upgrades=tuple(t for t in options.transports if t == "websocket"),
        )
        self.sockets: dict[str, EngineSocket] = {}
        self.traffic = Traffic()  # bytes in and out (the bindings count WebSocket frames out)
        # one flush callback per loop tick (or per coalescing window) for all connections
        self._flush_batch = FlushBatch(options.write_coalesce)
        # every session's heartbeat and timeouts on one loop timer (made on the first session:
        # the loop is not known before)
        self._deadlines: DeadlineQueue | None = None
        self._ws_tasks: set[asyncio.Task[Any]] = set()   # running WebSocket loops
        self._bg_tasks: set[asyncio.Task[Any]] = set()   # short-lived helpers (ws close)
        self._closing = False

    # ------------------------------------------------------------------ verification

    def cors_headers(self, headers: dict[str, str]) -> list[tuple[str, str]]:
        allowed = self.options.cors_allowed_origins
        if allowed is None:
            return []
        origin = headers.get("origin")
        out: list[tuple[str, str]] = []
        if allowed == "*":  # never with credentials (EngineOptions refuses that)
            out.append(("Access-Control-Allow-Origin", "*"))
        elif origin and origin in allowed:
            out += [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        else:
            return []
        if self.options.cors_credentials:
            out.append(("Access-Control-Allow-Credentials", "true"))
        return out

    def preflight(self, headers: dict[str, str]) -> HttpReply:
        cors = self.cors_headers(headers)
        if self.options.cors_allowed_origins is None:
            return self.error_reply(BadHandshakeMethod(), headers)
        cors.append(("Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE"))
        wanted = headers.get("access-control-request-headers")
        if wanted:
            cors.append(("Access-Control-Allow-Headers", wanted))
        cors.append(("Content-Length", "0"))
        return HttpReply(204, b"", cors)

    def error_reply(self, err: EngineError, headers: dict[str, str]) -> HttpReply:
        cors = self.cors_headers(headers)
        if isinstance(err, PayloadTooLarge):  # the rest of the body is not read
            return HttpReply(413, b"", cors, close=True)
        return HttpReply(err.status, err.body(), [("Content-Type", "application/json"), *cors])

    async def verify(self, info: RequestInfo, upgrade: bool) -> EngineSocket | None:
        """engine.io's checks, in its order. Returns the existing session, or None for a
        handshake; raises an EngineError to refuse."""
        query = info.query
        transport = query.get("transport")
        if transport not in self.options.transports:
            raise UnknownTransport(context=f"transport {transport!r}")
        origin = info.headers.get("origin")
        if origin is not None and _invalid_header_value(origin):
            raise BadRequest(context="invalid origin header")
        sid = query.get("sid")
        if sid is not None:
            socket = self.sockets.get(sid)
            if socket is None:
                raise UnknownSessionId(context=f"sid {sid!r}")
            if upgrade:
                if transport != "websocket":
                    raise BadRequest(context="upgrade to a non-WebSocket transport")
            elif socket.transport != transport:
                raise BadRequest(context="transport mismatch")
            return socket
        if info.method != "GET":
            raise BadHandshakeMethod(context=f"method {info.method}")
        if transport == "websocket" and not upgrade:
            raise BadRequest(context="websocket handshake without upgrade")
        if self._closing:
            raise BadRequest(context="server shutting down")
        hook = self.options.allow_request
        if hook is not None:
            try:
                result = hook(info)
                if inspect.isawaitable(result):
                    await result
            except EngineError:  # the app chose the status and the message the client gets
                raise
            except Exception as exc:  # noqa: BLE001 - the hook refuses by raising; its text stays here
                log.info("allow_request refused %s: %s", clip(info.url), clip(repr(exc)))
                raise Forbidden(context="allow_request refused") from None
        if query.get("EIO") != "4":
            raise UnsupportedProtocolVersion(context=f"EIO {query.get('EIO')!r}")
        return None

    # ------------------------------------------------------------------ sessions

    def _new_socket(self, info: RequestInfo, transport: str) -> EngineSocket:
        try:
            sid = self.options.sid_generator()
        except Exception:
            log.exception("sid_generator failed")
            raise BadRequest(context="sid generation failed") from None
        if not isinstance(sid, str) or not sid or sid in self.sockets:
            raise BadRequest(context="sid generation returned an unusable id")
        loop = asyncio.get_running_loop()
        socket = EngineSocket(
            sid, transport, info, self._config, loop, self._flush_batch, self._forget, self._deadlines_for(loop)
        )
        self.sockets[sid] = socket
        return socket

    def _deadlines_for(self, loop: asyncio.AbstractEventLoop) -> DeadlineQueue:
        queue = self._deadlines
        if queue is None or queue.loop is not loop:  # a server reused on another loop (tests)
            queue = self._deadlines = DeadlineQueue(loop)
        return queue

    def _connected(self, socket: EngineSocket) -> None:
        try:
            self.on_connection(socket)
        except Exception:
            log.exception("engine on_connection handler failed; closing %s", socket.sid)
            socket.close()

    def _forget(self, socket: EngineSocket) -> None:
        if self.sockets.get(socket.sid) is socket:
            del self.sockets[socket.sid]

    def _handshake_headers(self, sid: str) -> list[tuple[str, str]]:
        cookie = self.options.cookie_header(sid)
        return [("Set-Cookie", cookie)] if cookie else []

    # ------------------------------------------------------------------ HTTP

    async def handle_http(
        self,
        info: RequestInfo,
        read_body: Callable[[int], Awaitable[bytes | None]],
        connection_open: Callable[[], bool] | None = None,
    ) -> HttpReply:
        """Serve one non-WebSocket request. `read_body(limit)` returns the body, or None
        when it is longer than `limit` bytes. `connection_open()` tells whether the
        request's connection is still open (a parked GET is answered only if it is); the
        binding calls `reply.undelivered()` when it could not write the reply."""
        reply = await self._handle_http(info, read_body, connection_open)
        self.traffic.bytes_out += len(reply.body)
        return reply

    async def _handle_http(
        self,
        info: RequestInfo,
        read_body: Callable[[int], Awaitable[bytes | None]],
        connection_open: Callable[[], bool] | None,
    ) -> HttpReply:
        headers = info.headers
        if info.method == "OPTIONS":
            return self.preflight(headers)
        try:
            socket = await self.verify(info, upgrade=False)
            if socket is None:
                return self._polling_handshake(info)
            if socket.transport != "polling":  # pragma: no cover - verify() refuses this
                raise BadRequest()
            if info.method == "GET":
                return await self._poll(socket, info, connection_open)
            if info.method == "POST":
                return await self._post(socket, info, read_body)
            raise BadRequest(context=f"method {info.method} on a session")
        except EngineError as err:
            log.debug("refused %s %s: %r", clip(info.method, 20), clip(info.url), err)
            return self.error_reply(err, headers)

    def _polling_handshake(self, info: RequestInfo) -> HttpReply:
        socket = self._new_socket(info, "polling")
        body = socket._session.open().polling
        reply = self._text_reply(body, info, self._handshake_headers(socket.sid))
        self._connected(socket)
        return reply

    async def _poll(
        self, socket: EngineSocket, info: RequestInfo, connection_open: Callable[[], bool] | None
    ) -> HttpReply:
        session = socket._session
        answer: tuple[str, Sequence[EncodedPacket]] | None = session.poll()
        if answer is None:  # parked until there is something to send
            fut: asyncio.Future[tuple[str, Sequence[EncodedPacket]]]
            fut = asyncio.get_running_loop().create_future()
            socket._poll_future = fut
            socket._poll_alive = connection_open
            try:
                answer = await fut
            except asyncio.CancelledError:
                if socket._poll_future is fut:
                    socket._poll_future = None
                    socket._poll_alive = None
                    session.on_poll_aborted()
                elif fut.done() and not fut.cancelled():  # answered, never written
                    session.requeue(fut.result()[1])
                raise
        body, packets = answer
        reply = self._text_reply(body, info)
        if packets:
            reply.undelivered = partial(session.requeue, packets)
            reply.interrupted = session.on_poll_interrupted
        return reply

    async def _post(
        self, socket: EngineSocket, info: RequestInfo, read_body: Callable[[int], Awaitable[bytes | None]]
    ) -> HttpReply:
        session = socket._session
        session.begin_post()
        limit = self.options.max_http_buffer_size
        try:
            # bounded: a slow body cannot hold the request (and its session) open, and the
            # read ends as soon as the session closes (EngineSocket.session_closed)
            async with asyncio.timeout(self.options.http_body_timeout) as deadline:
                socket._post_deadline = deadline
                body = await read_body(limit)
        except TimeoutError:
            socket._post_deadline = None
            session.on_post_aborted("request body timeout")
            reply = self.error_reply(BadRequest(context="body timeout or session closed"), info.headers)
            reply.close = True
            return reply
        except BaseException:
            socket._post_deadline = None
            session.on_post_aborted("data request connection closed prematurely")
            raise
        socket._post_deadline = None
        if body is not None:
            self.traffic.bytes_in += len(body)
        answer = session.on_post(body, info.headers.get("content-type"))
        return HttpReply(
            200,
            answer.encode(),
            [("Content-Type", "text/html"), ("Cache-Control", "no-store"), *self.cors_headers(info.headers)],
        )

    def _text_reply(
        self, body: str, info: RequestInfo, extra: Sequence[tuple[str, str]] = ()
    ) -> HttpReply:
        data = body.encode()
        headers = [("Content-Type", _TEXT), ("Cache-Control", "no-store"), *extra]
        if (
            self.options.http_compression
            and len(data) >= COMPRESSION_THRESHOLD
            and _accepts_gzip(info.headers.get("accept-encoding", ""))
        ):
            data = gzip.compress(data, compresslevel=6)
            headers.append(("Content-Encoding", "gzip"))
        headers += self.cors_headers(info.headers)
        return HttpReply(200, data, headers)

    # ------------------------------------------------------------------ WebSocket

    async def accept_websocket(self, info: RequestInfo) -> tuple[EngineSocket, bool]:
        """Verify a WebSocket request before the binding accepts it (raises EngineError).
        Returns (socket, is_new): a fresh, not yet opened session for a direct handshake
        (call `handshake_headers(socket)` for its response headers), or the session to
        upgrade."""
        existing = await self.verify(info, upgrade=True)
        if info.query.get("transport") != "websocket":  # e.g. an upgrade on a polling URL
            raise BadRequest(context="only the websocket transport handles upgrades")
        if existing is not None:
            return existing, False
        return self._new_socket(info, "websocket"), True

    def handshake_headers(self, socket: EngineSocket) -> list[tuple[str, str]]:
        return self._handshake_headers(socket.sid)

    def abandon(self, socket: EngineSocket, is_new: bool) -> None:
        """The binding could not accept the WebSocket after accept_websocket()."""
        if is_new:
            self._forget(socket)

    async def run_websocket(
        self,
        socket: EngineSocket,
        is_new: bool,
        writer: WsWriter,
        receive: Callable[[], Awaitable[str | bytes]],
    ) -> None:
        """Drive an accepted WebSocket: a direct handshake (is_new) or an upgrade.
        `receive()` yields frames and raises WsClosed at the end."""
        task = asyncio.current_task()
        if task is not None:
            self._ws_tasks.add(task)
        try:
            session = socket._session
            if is_new:
                if self._closing:
                    self._forget(socket)
                    writer.close()
                    return
                socket._ws = writer
                writer.write_packets([session.open()])
                self._connected(socket)
            else:
                if not session.start_upgrade():
                    writer.close()
                    return
                socket._ws = writer
            traffic = self.traffic
            while socket._ws is writer:
                try:
                    data = await receive()
                except WsClosed as closed:
                    if socket._ws is writer:
                        socket._ws = None
                        session.on_ws_closed(closed.error)
                    return
                if socket._ws is not writer:
                    return
                traffic.bytes_in += len(data)
                session.on_ws_message(data)
        finally:
            if task is not None:
                self._ws_tasks.discard(task)

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a binding's short-lived task (e.g. a WebSocket close) until it ends; close()
        waits for it."""
        self._bg_tasks.add(task)
        task.add_done_callback(self._bg_tasks.discard)

    # ------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        """Close every session ("server shutting down"); return when no task, timer or
        connection of ours is left."""
        self._closing = True
        for socket in list(self.sockets.values()):
            socket._session.close(SERVER_SHUTTING_DOWN, discard=True)
        # WebSocket loops end once their close handshake completes (bounded by close timeouts).
        for _ in range(3):
            pending = [t for t in (*self._ws_tasks, *self._bg_tasks) if not t.done()]
            if not pending:
                break
            _, still = await asyncio.wait(pending, timeout=2.0)
            for t in still:
                t.cancel()


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def now_ms() -> int:
    return int(time.time() * 1000)
