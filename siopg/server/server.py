"""Server: the user's entry point (socket.io's `io`), wiring engine, parser, namespaces, adapter."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from siopg._log import clip
from siopg.adapter.base import Adapter
from siopg.adapter.memory import InMemoryAdapter
from siopg.engine import EngineConnection, EngineOptions, EngineServer
from siopg.engine.asgi import EngineASGIApp, on_exit_signals
from siopg.engine.message import OutgoingMessage, UncompressedMessage
from siopg.names import DEFAULT_MAX_NAME_BYTES, check_name
from siopg.parser import Packet, get_parser
from siopg.server.broadcast import BroadcastOperator
from siopg.server.client import Client
from siopg.server.counters import Metrics
from siopg.server.errors import TooManyNamespaces
from siopg.server.extensions import EXTENSIONS
from siopg.server.loop_lag import LoopLagProbe
from siopg.server.namespace import Namespace, NamespaceMatcher
from siopg.server.options import Recovery
from siopg.server.parent import ParentNamespace
from siopg.server.tasks import Done, TaskSet

logger = logging.getLogger("siopg.server")


class Server:
    """A Socket.IO server. Options are documented in docs/api.md."""

    def __init__(
        self,
        *,
        path: str = "/socket.io/",
        cors_allowed_origins: str | list[str] | None = None,
        cors_credentials: bool = False,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        upgrade_timeout: float = 10.0,
        max_http_buffer_size: int = 1_000_000,
        http_body_timeout: float | None = 20.0,
        max_buffer_size: int = 8 * 1024 * 1024,
        write_coalesce_ms: float = 0.0,
        transports: Iterable[str] = ("polling", "websocket"),
        allow_request: Callable[..., Any] | None = None,
        cookie: str | dict[str, Any] | None = None,
        http_compression: bool = False,
        per_message_deflate: bool = False,
        connect_timeout: float = 45.0,
        parser: str = "default",
        connection_state_recovery: Recovery | bool | None = None,
        adapter: Callable[[Any], Any] | None = None,
        cleanup_empty_child_namespaces: bool = False,
        max_namespace_length: int = DEFAULT_MAX_NAME_BYTES,
        max_room_length: int = DEFAULT_MAX_NAME_BYTES,
        max_event_name_length: int = DEFAULT_MAX_NAME_BYTES,
        max_dynamic_namespaces: int = 1000,
        max_namespaces_per_connection: int = 50,
    ) -> None:
        if connection_state_recovery is True:
            connection_state_recovery = Recovery()
        elif connection_state_recovery is False:
            connection_state_recovery = None
        if connection_state_recovery is not None and not isinstance(connection_state_recovery, Recovery):
            raise TypeError("connection_state_recovery must be a siopg.Recovery, True or None")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        for option, value in (
            ("max_namespace_length", max_namespace_length),
            ("max_room_length", max_room_length),
            ("max_event_name_length", max_event_name_length),
            ("max_dynamic_namespaces", max_dynamic_namespaces),
            ("max_namespaces_per_connection", max_namespaces_per_connection),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{option} must be a positive integer")
        # Names are bounded in UTF-8 bytes (NUL and lone surrogates refused): see siopg.names
        # and docs/limits.md for what a client sees when it sends a bad one.
        self.max_namespace_length = max_namespace_length
        self.max_room_length = max_room_length
        self.max_event_name_length = max_event_name_length
        # dynamic child namespaces alive at once, over every parent (clients create them)
        self.max_dynamic_namespaces = max_dynamic_namespaces
        # namespaces one connection may be in (or joining) at once: without it one client
        # could hold every dynamic slot and lock everyone else out of new children
        self.max_namespaces_per_connection = max_namespaces_per_connection
        self.recovery: Recovery | None = connection_state_recovery
        self.connect_timeout = connect_timeout
        # forget a dynamic namespace's child once its last socket left (socket.io's option)
        self.cleanup_empty_child_namespaces = bool(cleanup_empty_child_namespaces)
        self._parser = get_parser(parser)
        # `compress(False)` only changes anything when WebSocket frames may be deflated
        self._deflate = bool(per_message_deflate)
        self._adapter_factory: Callable[[Any], Any] = adapter or InMemoryAdapter
        self._tasks = TaskSet(logger)
        self._signal_close: asyncio.Task[None] | None = None  # close() started by SIGTERM under ASGI
        self.metrics = Metrics()
        self._loop_lag = LoopLagProbe(self.metrics.loop_lag)
        self._metrics_registry: Any = None  # made on first use (see metrics_registry)
        self._nsps: dict[str, Namespace] = {}
        self._parents: list[ParentNamespace] = []
        self._clients: dict[str, Client] = {}
        self._closing = False
        self._started = False
        self.engine = EngineServer(
            self._on_engine_connection,
            EngineOptions(
                path=path,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                upgrade_timeout=upgrade_timeout,
                max_http_buffer_size=max_http_buffer_size,
                http_body_timeout=http_body_timeout,
                transports=tuple(transports),
                allow_request=allow_request,
                cors_allowed_origins=cors_allowed_origins,
                cors_credentials=cors_credentials,
                cookie=cookie,
                http_compression=http_compression,
                per_message_deflate=per_message_deflate,
                max_buffer_size=max_buffer_size,
                write_coalesce=write_coalesce_ms / 1000,
            ),
        )
        self.sockets: Namespace = self.of("/")  # the main namespace, like socket.io's io.sockets

    @property
    def adapter_factory(self) -> Callable[[Any], Any]:
        """What makes each namespace's adapter: the `adapter` option (InMemoryAdapter by default)."""
        return self._adapter_factory

    def set_adapter_factory(self, factory: Callable[[Any], Any]) -> None:
        """Make every namespace's adapter with `factory`, those created already included.

        For a launcher that picks the adapter after the app built its Server (a process
        manager giving each worker a shared database, say). Must run before the server
        starts; a namespace whose adapter a running event loop already initialised keeps it.
        """
        if self._started:
            raise RuntimeError("set_adapter_factory() must be called before the server starts")
        self._adapter_factory = factory
        for nsp in self._nsps.values():
            if nsp._ready is None:
                nsp.adapter = factory(nsp)
            else:
                logger.warning("namespace %s keeps its adapter: it was initialised already", clip(nsp.name))

    def set_sid_generator(self, sid_generator: Callable[[], str]) -> None:
        """Make Engine.IO session ids with `sid_generator` (e.g. ids that tell a router which
        process owns the session). Must run before the server starts."""
        if self._started:
            raise RuntimeError("set_sid_generator() must be called before the server starts")
        self.engine.options.sid_generator = sid_generator

    @property
    def metrics_registry(self) -> Any:
        """This server's own Prometheus registry (made by siopg.metrics on first use)."""
        if self._metrics_registry is None:
            self._metrics_registry = EXTENSIONS.require("metrics_registry")(self)
        return self._metrics_registry

    @property
    def path(self) -> str:
        return self.engine.options.path

    @property
    def parser(self) -> str:
        return self._parser.name

    @property
    def namespaces(self) -> Mapping[str, Namespace]:
        """Every namespace created so far (dynamic children included), by name.

        A read-only live view for metrics and the dashboard: copy it (`list(...)`) before
        iterating across an await.
        """
        return MappingProxyType(self._nsps)

    def open_connections(self) -> dict[str, int]:
        """Open Engine.IO connections by current transport ("polling", "websocket" always present).

        O(connections): meant for a scrape or a dashboard reading, not for the hot path.
        """
        counts = {"websocket": 0, "polling": 0}
        for client in list(self._clients.values()):
            transport = getattr(client.conn, "transport", None) or "unknown"
            counts[transport] = counts.get(transport, 0) + 1
        return counts

    # namespaces --------------------------------------------------------------------------
    def of(self, name: str | NamespaceMatcher, handler: Callable[..., Any] | None = None) -> Namespace:
        """The namespace `name` (created on first use); a regex or callable(name, auth) -> bool
        makes a dynamic parent whose children are created when a client connects."""
        if isinstance(name, str):
            if not name.startswith("/"):
                name = "/" + name
            check_name(name, "namespace", self.max_namespace_length)
            nsp = self._nsps.get(name)
            if nsp is None:
                nsp = Namespace(self, name)
                self._nsps[name] = nsp
                self._maybe_init(nsp)
        elif isinstance(name, re.Pattern) or callable(name):
            nsp = ParentNamespace(self, name)
            self._parents.append(nsp)
        else:
            raise TypeError("namespace must be a str, a compiled regex or a callable(name, auth)")
        if handler is not None:
            nsp.on("connection", handler)
        return nsp

    def _maybe_init(self, nsp: Namespace) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # started by _startup() or by the first connection
        nsp._start_init()

    def _messages(self, packet: Packet, compress: bool | None = None) -> list[OutgoingMessage]:
        """The engine messages of one Socket.IO packet: the one encoding path of every emit.

        Broadcasts call it once and hand the same list to every recipient. `compress=False`
        (the `compress(False)` flag) sends them uncompressed, which matters only with
        per-message deflate.
        """
        kind = UncompressedMessage if compress is False and self._deflate else OutgoingMessage
        return [kind(part) for part in self._parser.encoder.encode(packet)]

    def _make_adapter(self, nsp: Namespace) -> Adapter:
        return self._adapter_factory(nsp)

    def valid_namespace_name(self, name: object) -> bool:
        """Whether a client may name this namespace (length, no NUL, no lone surrogate)."""
        try:
            check_name(name, "namespace", self.max_namespace_length)
        except ValueError:
            return False
        return True

    def dynamic_namespace_count(self) -> int:
        """Child namespaces of dynamic parents that currently exist (bounded by the option)."""
        return sum(len(parent.children) for parent in self._parents)

    async def _namespace_for(self, name: str, auth: dict[str, Any]) -> Namespace | None:
        """An existing namespace, or a child of the first dynamic parent that accepts `name`.

        Raises TooManyNamespaces when a new child would pass `max_dynamic_namespaces` and no
        empty child can be forgotten to make room. The caller validated `name` already.
        """
        nsp = self._nsps.get(name)
        if nsp is not None:
            return nsp
        for parent in list(self._parents):
            try:
                ok = await parent.matches(name, auth)
            except Exception:
                logger.exception("dynamic namespace matcher failed for %s", clip(name))
                ok = False
            if ok:
                existing = self._nsps.get(name)  # created meanwhile by another connection
                if existing is not None:
                    return existing
                if self.dynamic_namespace_count() >= self.max_dynamic_namespaces and not self._forget_an_empty_child():
                    self.metrics.dynamic_namespaces_refused += 1
                    raise TooManyNamespaces(name)
                child = parent.create_child(name)
                self._nsps[name] = child
                self._maybe_init(child)
                return child
        return None

    def _forget_an_empty_child(self) -> bool:
        """Forget the oldest dynamic child with no socket and no connection being set up (as
        `cleanup_empty_child_namespaces` would have): the limit then bounds memory without
        letting abandoned names lock new ones out. False when every child is in use."""
        for nsp in list(self._nsps.values()):
            parent = nsp._parent
            if parent is not None and not (nsp.sockets or nsp._preconnect or nsp._joining):
                parent._forget_child(nsp)
                return True
        return False

    # "/" shortcuts -----------------------------------------------------------------------
    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        return self.sockets.on(event, handler)

    def off(self, event: str, handler: Callable[..., Any] | None = None) -> None:
        self.sockets.off(event, handler)

    def use(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self.sockets.use(fn)

    def to(self, room: str | Iterable[str]) -> BroadcastOperator:
        return self.sockets.to(room)

    in_ = to

    def except_(self, room: str | Iterable[str]) -> BroadcastOperator:
        return self.sockets.except_(room)

    @property
    def volatile(self) -> BroadcastOperator:
        return self.sockets.volatile

    def compress(self, compress: bool) -> BroadcastOperator:
        return self.sockets.compress(compress)

    @property
    def local(self) -> BroadcastOperator:
        return self.sockets.local

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self.sockets.timeout(seconds)

    def emit(self, event: str, *args: Any, callback: Callable[[Any, Any], Any] | None = None) -> Done:
        return self.sockets.emit(event, *args, callback=callback)

    def send(self, *args: Any) -> Done:
        return self.sockets.send(*args)

    def emit_with_ack(self, event: str, *args: Any) -> asyncio.Future[Any]:
        return self.sockets.emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Any]:
        return await self.sockets.fetch_sockets()

    def sockets_join(self, room: str | Iterable[str]) -> Done:
        return self.sockets.sockets_join(room)

    def sockets_leave(self, room: str | Iterable[str]) -> Done:
        return self.sockets.sockets_leave(room)

    def disconnect_sockets(self, close: bool = False) -> Done:
        return self.sockets.disconnect_sockets(close)

    def server_side_emit(self, event: str, *args: Any) -> None:
        self.sockets.server_side_emit(event, *args)

    async def server_side_emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> list[Any]:
        return await self.sockets.server_side_emit_with_ack(event, *args, timeout=timeout)

    async def server_count(self) -> int:
        return await self.sockets.server_count()

    # engine ------------------------------------------------------------------------------
    def _on_engine_connection(self, conn: EngineConnection) -> None:
        if self._closing:
            conn.close("server shutting down")
            return
        self._clients[conn.sid] = Client(self, conn)
        self.metrics.engine_connections_total += 1

    def _client_closed(self, client: Client) -> None:
        if self._clients.get(client.id) is client:
            del self._clients[client.id]

    # running -----------------------------------------------------------------------------
    async def _startup(self) -> None:
        """Initialise every adapter (called by the app's startup hook, or lazily)."""
        self._started = True
        if not self._closing:
            self._loop_lag.start()
        await asyncio.gather(*(nsp._start_init() for nsp in list(self._nsps.values())))

    def aiohttp_app(self, metrics: bool = False, dashboard: bool = False) -> Any:
        """An aiohttp Application serving `path` (and `/metrics`, `/dashboard` when asked)."""
        from aiohttp import web

        app = web.Application()
        self.attach(app, metrics=metrics)
        if dashboard:  # no auth here: call siopg.dashboard.setup(io, app, auth=...) for that
            EXTENSIONS.require("dashboard_setup")(self, app)
        return app

    def attach(self, app: Any, metrics: bool = False) -> None:
        """Mount on an aiohttp app of yours: routes, plus startup and shutdown hooks."""
        from siopg.engine.aiohttp_binding import aiohttp_handler

        path = self.path
        handler = aiohttp_handler(self.engine)
        app.router.add_route("*", path, handler)
        if path.rstrip("/"):
            app.router.add_route("*", path.rstrip("/"), handler)
        if metrics:  # siopg.metrics.setup(io, app) (it sits above the server: see extensions)
            EXTENSIONS.require("metrics_setup")(self, app)

        async def on_startup(_app: Any) -> None:
            await self._startup()

        async def on_shutdown(_app: Any) -> None:
            await self.close()

        app.on_startup.append(on_startup)
        app.on_shutdown.append(on_shutdown)

    async def metrics_handler(self, request: Any) -> Any:
        """An aiohttp handler exposing this server's Prometheus metrics (siopg.metrics')."""
        return await EXTENSIONS.require("metrics_handler")(self, request)

    def asgi_app(self, other_asgi_app: Any = None) -> Any:
        """An ASGI app serving `path`; other paths go to `other_asgi_app` (or get a 404)."""
        inner = EngineASGIApp(self.engine, other_asgi_app)

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send, other_asgi_app)
                return
            await inner(scope, receive, send)

        return app

    async def _lifespan(self, scope: dict[str, Any], receive: Any, send: Any, other: Any) -> None:
        # SIGTERM / SIGINT close the server at once: the ASGI server waits for parked polls
        # before it sends lifespan.shutdown (see siopg.engine.asgi.on_exit_signals).
        restore = on_exit_signals(asyncio.get_running_loop(), self._close_on_signal)
        try:
            await self._lifespan_events(scope, receive, send, other)
        finally:
            restore()
            if self._signal_close is not None:
                await asyncio.gather(self._signal_close, return_exceptions=True)

    def _close_on_signal(self) -> None:
        # kept in an attribute, not the TaskSet: close() drains the TaskSet and would wait for itself
        if self._signal_close is None:
            self._signal_close = asyncio.get_running_loop().create_task(self.close())

    async def _lifespan_events(self, scope: dict[str, Any], receive: Any, send: Any, other: Any) -> None:
        if other is not None:

            async def wrapped_receive() -> dict[str, Any]:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self._startup()
                elif message["type"] == "lifespan.shutdown":
                    await self.close()
                return message

            await other(scope, wrapped_receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup()
                except Exception as exc:  # noqa: BLE001 - reported to the ASGI server, which stops
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def close(self) -> None:
        """Disconnect everyone ("server shutting down"), close adapters, leave no task behind."""
        if self._closing:
            return
        self._closing = True
        self._loop_lag.stop()
        if self.recovery is not None:
            # sessions first: clients reconnect elsewhere as soon as their connection closes
            persists = [
                socket._persist_before_shutdown()
                for nsp in list(self._nsps.values())
                for socket in list(nsp.sockets.values())
            ]
            results = await asyncio.gather(*persists, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    logger.error("persisting a session at shutdown failed", exc_info=result)
        await self.engine.close()
        for client in list(self._clients.values()):  # sessions the engine did not report
            client._on_close("server shutting down")
        for nsp in list(self._nsps.values()):  # pending broadcast acks end now, timers with them
            for abort in list(nsp._open_broadcasts):
                abort()
        await self._tasks.drain()  # handlers and persist_session calls in flight
        for nsp in list(self._nsps.values()):
            if nsp._ready is not None and not nsp._ready.done():
                nsp._ready.cancel()
            try:
                await nsp.adapter.close()
            except Exception:
                logger.exception("closing the adapter of %s failed", nsp.name)
        await self._tasks.drain()
