"""aiohttp binding: moves bytes between aiohttp and the engine core, decides nothing.

``aiohttp_handler(engine)`` is the route handler for the engine's path (it builds on the
framework-neutral :class:`~siopg.engine.server.EngineServer`, which never imports this module).

WebSocket output bypasses aiohttp's per-message send path: after ``prepare()``, the cached
frame bytes of everything queued during one loop tick are written with ONE
``transport.write`` (the kernel's per-write cost dominates, so coalescing is the big win).
Incoming frames are read through aiohttp's receive loop as usual. With per-message deflate
negotiated, frames go through aiohttp's compressed send path instead (slower, one task),
except messages sent with `compress(False)`, whose plain frames are written as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from aiohttp import WSMsgType, web

from .errors import EngineError
from .message import EncodedPacket
from .request import RequestInfo, header_name
from .server import EngineServer, HttpReply, WsClosed, now_ms

log = logging.getLogger("siopg.engine")


class _WsIO:
    """The incoming side both writers share: a method rather than a closure per connection
    (an idle connection keeps it for its whole life)."""

    __slots__ = ("_ws",)

    _ws: web.WebSocketResponse

    async def receive(self) -> str | bytes:
        """The next data frame; raises WsClosed when the WebSocket is gone."""
        ws = self._ws
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                return msg.data  # type: ignore[no-any-return]
            if kind is WSMsgType.ERROR:
                raise WsClosed(str(ws.exception() or "websocket error"))
            if kind in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                raise WsClosed(None)


class RawWsWriter(_WsIO):
    """Writes pre-framed bytes straight to the connection's transport."""

    __slots__ = ("_closed", "_server", "_traffic", "_transport")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, server: EngineServer) -> None:
        self._ws = ws
        self._transport = transport
        self._server = server
        self._traffic = server.traffic
        self._closed = False

    def write_packets(self, packets: Sequence[EncodedPacket]) -> int:
        transport = self._transport
        if self._closed or transport.is_closing():
            return 0
        data = packets[0].ws_frame if len(packets) == 1 else b"".join([p.ws_frame for p in packets])
        transport.write(data)
        self._traffic.bytes_out += len(data)
        return transport.get_write_buffer_size()

    def buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    @property
    def closing(self) -> bool:
        return self._closed or self._transport.is_closing()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._server.track(asyncio.ensure_future(_close_ws(self._ws)))


class DeflateWsWriter(_WsIO):
    """Per-message deflate: each frame goes through aiohttp's compressed send path."""

    __slots__ = ("_closed", "_pending", "_pending_bytes", "_server", "_task")

    def __init__(self, ws: web.WebSocketResponse, server: EngineServer) -> None:
        self._ws = ws
        self._server = server
        self._pending: deque[EncodedPacket] = deque()
        self._pending_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def write_packets(self, packets: Sequence[EncodedPacket]) -> int:
        if self._closed:
            return 0
        self._pending.extend(packets)
        size = sum(p.size for p in packets)
        self._pending_bytes += size
        self._server.traffic.bytes_out += size
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())
            self._server.track(self._task)
        return self.buffer_size()

    async def _drain(self) -> None:
        try:
            while self._pending:
                packet = self._pending.popleft()
                self._pending_bytes -= packet.size
                if not packet.compress:
                    # RSV1 clear: an uncompressed frame, legal on a deflate connection; its
                    # cached frame bytes go straight out, after the compressed ones before it
                    transport = self._ws._req.transport if self._ws._req is not None else None
                    if transport is None or transport.is_closing():
                        raise ConnectionResetError("websocket transport closed")
                    transport.write(packet.ws_frame)
                    continue
                payload = packet.ws_payload()
                if isinstance(payload, str):
                    await self._ws.send_str(payload)
                else:
                    await self._ws.send_bytes(payload)
        except Exception:  # noqa: BLE001 - connection gone (any error): the receive loop reports it
            self._pending.clear()
            self._pending_bytes = 0
        finally:
            self._task = None
        if self._closed:
            await _close_ws(self._ws)

    def buffer_size(self) -> int:
        transport = self._ws._req.transport if self._ws._req is not None else None
        return self._pending_bytes + (transport.get_write_buffer_size() if transport else 0)

    @property
    def closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._task is None:
                self._server.track(asyncio.ensure_future(_close_ws(self._ws)))


async def _close_ws(ws: web.WebSocketResponse) -> None:
    try:
        await ws.close()
    except Exception as exc:  # noqa: BLE001 - the connection is gone either way
        log.debug("engine websocket close failed: %r", exc)


def request_info(request: web.Request) -> RequestInfo:
    raw = request.headers
    headers = {header_name(name): value for name, value in raw.items()}
    if len(headers) != len(raw):  # a repeated header: join its values, as Node does
        headers = {}
        for name, value in raw.items():
            key = header_name(name)
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return RequestInfo(
        headers=headers,
        query=dict(request.query),
        remote_address=request.remote,
        url=str(request.rel_url),
        secure=request.secure,
        issued=now_ms(),
        method=request.method,
    )


def to_response(reply: HttpReply) -> web.Response:
    response = web.Response(status=reply.status, body=reply.body)
    for name, value in reply.headers:
        if name.lower() == "content-type":
            response.headers["Content-Type"] = value
        else:
            response.headers.add(name, value)
    return response


async def _write_reply(
    request: web.Request, reply: HttpReply, connection_open: Callable[[], bool]
) -> web.StreamResponse:
    """Write the reply here rather than after the handler returns (where aiohttp ignores a
    failed write), so a reply that did not go out is reported: `undelivered` when no byte of
    its body reached the connection, `interrupted` when the write broke (or was cancelled)
    after the body was handed over. With `reply.close`, close the connection instead of
    reading the rest of the body."""
    response = to_response(reply)
    if reply.close:
        response.force_close()
    handed = sent = False
    try:
        if connection_open():
            await response.prepare(request)
            transport = request.transport
            if transport is not None and not transport.is_closing():
                # write_eof gives the whole body to the transport before it first waits (for
                # the drain): from here on the client may receive it, whatever happens next
                handed = True
                await response.write_eof()
                sent = True
    except Exception as exc:  # noqa: BLE001 - the connection broke while we wrote
        log.debug("engine reply not written: %r", exc)
    finally:
        if not sent:
            report = reply.interrupted if handed else reply.undelivered
            if report is not None:
                report()
    if reply.close and sent:
        request.protocol.force_close()  # no lingering read of an unread body
    return response


def aiohttp_handler(server: EngineServer) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler serving `server`: route every method of the engine path to it."""
    return partial(handle_request, server)


async def handle_request(server: EngineServer, request: web.Request) -> web.StreamResponse:
    """Serve one aiohttp request on the engine path (polling, preflight or WebSocket)."""
    info = request_info(request)
    is_upgrade = (
        request.method == "GET" and info.headers.get("upgrade", "").lower() == "websocket"
    )
    if not is_upgrade:

        async def read_body(limit: int) -> bytes | None:
            if request.content_length is not None and request.content_length > limit:
                return None
            buf = bytearray()
            async for chunk in request.content.iter_chunked(65536):
                buf += chunk
                if len(buf) > limit:
                    return None
            return bytes(buf)

        def connection_open() -> bool:
            transport = request.transport  # None once aiohttp saw the connection close
            return transport is not None and not transport.is_closing()

        reply = await server.handle_http(info, read_body, connection_open)
        if reply.undelivered is None and not reply.close:
            return to_response(reply)
        return await _write_reply(request, reply, connection_open)

    try:
        socket, is_new = await server.accept_websocket(info)
    except EngineError as err:
        return to_response(server.error_reply(err, info.headers))
    opts = server.options
    ws = web.WebSocketResponse(
        timeout=2.0,  # how long a server-side close waits for the client's close frame
        max_msg_size=opts.max_http_buffer_size,
        compress=opts.per_message_deflate,
        autoping=True,
        heartbeat=None,
    )
    if is_new:
        for name, value in server.handshake_headers(socket):
            ws.headers.add(name, value)
    try:
        await ws.prepare(request)
    except Exception:
        server.abandon(socket, is_new)
        raise
    transport = request.transport
    if transport is None:
        server.abandon(socket, is_new)
        return ws
    writer: RawWsWriter | DeflateWsWriter = (
        DeflateWsWriter(ws, server) if ws.compress else RawWsWriter(ws, transport, server)
    )

    try:
        await server.run_websocket(socket, is_new, writer, writer.receive)
    finally:
        if not ws.closed:
            await _close_ws(ws)
    return ws
