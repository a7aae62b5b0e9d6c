"""A worker process: serves the user's app on connections the supervisor hands over.

Started by the supervisor as `python -m siopg.supervisor.worker_main` with its settings in
`SIOPG_WORKER_*` env vars and one end of a SEQPACKET channel inherited as a file descriptor.
It binds no port: each received fd is an accepted TCP connection plus the bytes the supervisor
already read, injected into aiohttp with `connect_accepted_socket`.

Every plain HTTP response goes out with `Connection: close`: the next request on that TCP
connection may belong to a session of another worker, so it must come back through the
supervisor to be routed by its sid. A WebSocket stays on its worker (it is routed on its
upgrade request, which carries the sid).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from siopg._tasks import TaskSet
from siopg.adapter.memory import InMemoryAdapter
from siopg.runtime import GC_ENV, AppLoadError, apply_gc_setting, load_app
from siopg.runtime import run as run_loop
from siopg.supervisor import channel
from siopg.supervisor.logs import setup_logging
from siopg.supervisor.sid import make_sid_generator

log = logging.getLogger("siopg.worker")

ENV_ID = "SIOPG_WORKER_ID"
ENV_FD = "SIOPG_WORKER_FD"
ENV_APP = "SIOPG_WORKER_APP"
ENV_GRACE = "SIOPG_WORKER_GRACE"
ENV_NODE = "SIOPG_NODE_ID"
ENV_DATABASE = "SIOPG_WORKER_DATABASE_URL"  # the database the supervisor migrated (the app's DATABASE_URL is its own)
ENV_DASHBOARD = "SIOPG_DASHBOARD"            # "1": mount siopg.dashboard at /dashboard
ENV_DASHBOARD_AUTH = "SIOPG_DASHBOARD_AUTH"  # USER:PASSWORD for it
ENV_METRICS_NAMESPACES = "SIOPG_METRICS_MAX_NAMESPACES"  # namespace label values before folding


def worker_id() -> int | None:
    """This process's worker id when it runs under the supervisor, else None."""
    value = os.environ.get(ENV_ID)
    return int(value) if value and value.isdigit() else None


def worker_sid_generator() -> Callable[[], str] | None:
    """The sid generator an app must use when it builds its own Engine.IO server.

    siopg.Server apps are configured automatically; this is for other aiohttp apps.
    """
    wid = worker_id()
    return make_sid_generator(wid, os.environ.get(ENV_NODE) or None) if wid is not None else None


# -- preparing the app -------------------------------------------------------------------
Closer = Callable[[], Awaitable[None]]


def configure_siopg_server(io: Any, wid: int, database_url: str | None) -> None:
    """Give a siopg.Server this worker's sid generator and, if it has none, a Postgres adapter.

    The supervisor routes requests by the worker id the sid generator puts in each Engine.IO
    sid; an adapter the app chose is kept. Runs before the server starts (see main()).
    """
    io.set_sid_generator(make_sid_generator(wid, os.environ.get(ENV_NODE) or None))
    if database_url and io.adapter_factory is InMemoryAdapter:
        from siopg.adapter.postgres import PostgresAdapter

        io.set_adapter_factory(PostgresAdapter(database_url))
        log.info("using the Postgres adapter (the app configured none)")
    limit = os.environ.get(ENV_METRICS_NAMESPACES, "")
    metrics: Any = getattr(io, "metrics", None)
    if limit.isdecimal() and int(limit) > 0 and hasattr(metrics, "max_namespace_labels"):
        metrics.max_namespace_labels = int(limit)


async def build_app(
    obj: Any, wid: int, database_url: str | None, configured: bool = False
) -> tuple[web.Application, Closer | None]:
    """Turn what the app reference names into an aiohttp app (and how to close it first).

    With SIOPG_DASHBOARD=1 (set by the supervisor for `--dashboard`), a siopg.Server's app also
    serves the live dashboard; any other app is refused then (the dashboard needs the Server).
    """
    dashboard = os.environ.get(ENV_DASHBOARD) == "1"
    for _ in range(3):
        if hasattr(obj, "aiohttp_app") and hasattr(obj, "close"):
            if not configured:
                configure_siopg_server(obj, wid, database_url)
            # no /metrics route here: the supervisor serves the merged one (`--metrics`)
            app = obj.aiohttp_app()
            from siopg.dashboard import publish

            # every worker publishes its stats (the cluster dashboard, wherever it is served, reads them)
            publish(obj, app, worker=str(wid))
            if dashboard:
                from siopg.dashboard import setup as setup_dashboard
                from siopg.dashboard.auth import parse_credentials

                auth = os.environ.get(ENV_DASHBOARD_AUTH) or None
                setup_dashboard(obj, app, auth=parse_credentials(auth) if auth else None, worker=str(wid))
            return app, obj.close
        if isinstance(obj, web.Application):
            if dashboard:
                raise AppLoadError("--dashboard needs the app to be a siopg.Server (or a factory returning one)")
            return obj, None
        if callable(obj):  # an app factory, like aiohttp's `module:create_app`
            obj = obj()
            if inspect.isawaitable(obj):
                obj = await obj
            configured = False
            continue
        break
    raise AppLoadError(
        f"cannot serve {type(obj).__name__}: expected a siopg.Server, an aiohttp Application"
        " or a factory returning one"
    )


async def _close_after_http(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare hook: end the TCP connection after every non-upgrade response."""
    if response.status != 101:
        response.force_close()
        response.headers["Connection"] = "close"


DB_RETRY_MIN = 0.5     # seconds between the first attempts to reach the database
DB_RETRY_MAX = 5.0     # and at most this, however long the outage
DB_PROBE_TIMEOUT = 5.0


async def _probe_database(dsn: str, timeout: float) -> str | None:
    """None when `dsn` accepts a connection and answers; else why not (one line)."""
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure is "not reachable yet", told in the log
        return f"{type(exc).__name__}: {exc}"[:300]
    try:
        await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"[:300]
    finally:
        try:
            await asyncio.wait_for(conn.close(), timeout)
        except Exception:  # noqa: BLE001
            conn.terminate()
    return None


class _Handoff(asyncio.Protocol):
    """Feeds the supervisor's pre-read bytes to aiohttp's protocol, then steps aside."""

    __slots__ = ("_inner", "_pre")

    def __init__(self, inner: asyncio.Protocol, pre: bytes) -> None:
        self._inner = inner
        self._pre = pre

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        inner = self._inner
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if self._pre:
            inner.data_received(self._pre)

    def connection_lost(self, exc: Exception | None) -> None:  # only before connection_made
        self._inner.connection_lost(exc)


class Worker:
    def __init__(self, wid: int, chan: socket.socket, target: Any, database_url: str | None, grace: float) -> None:
        self.wid = wid
        self.chan = chan
        self.target = target
        self.database_url = database_url
        self.grace = grace
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._closer: Closer | None = None
        self._tasks = TaskSet(log)  # connections being handed to aiohttp
        self._outbox: channel.Outbox | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        if self.database_url and not await self._wait_for_database():
            return 0  # stopped while waiting: nothing was started
        try:
            app, self._closer = await build_app(self.target, self.wid, self.database_url, configured=True)
            app.on_response_prepare.append(_close_after_http)
            self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await self._runner.setup()
        except Exception as exc:
            log.error("worker failed to start: %s", exc, exc_info=not isinstance(exc, AppLoadError))
            return 3
        try:
            self.chan.sendall(channel.READY)  # still blocking: this one must not be dropped
        except OSError:
            log.warning("supervisor went away before this worker was ready")
            self._stop.set()
        self.chan.setblocking(False)
        self._outbox = channel.Outbox(loop, self.chan, self._supervisor_gone)
        loop.add_reader(self.chan.fileno(), self._on_channel)
        reporter = loop.create_task(self._report_load())
        log.info("worker %d ready (pid %d)", self.wid, os.getpid())
        await self._stop.wait()
        reporter.cancel()
        await self._drain()
        return 0

    async def _wait_for_database(self) -> bool:
        """Wait until the database answers before starting the app (False: stopped meanwhile).

        A worker started while Postgres is down (a restart during an outage) would otherwise
        fail its adapter's start and crash-loop its slot. It tells the supervisor it is waiting
        (so no new connection is queued to it and /readyz does not count it), logs one line
        per attempt, and retries with a backoff bounded by DB_RETRY_MAX seconds.
        """
        delay = DB_RETRY_MIN
        attempt = 0
        told = False
        while not self._stop.is_set():
            attempt += 1
            error = await _probe_database(self.database_url or "", DB_PROBE_TIMEOUT)
            if error is None:
                if attempt > 1:
                    log.info("worker %d: database reachable again after %d attempts; starting", self.wid, attempt)
                return True
            if not told:
                told = True
                try:
                    self.chan.sendall(channel.WAITING)
                except OSError:
                    log.warning("supervisor went away while this worker waited for its database")
                    return False
            log.warning("worker %d: database unreachable (attempt %d: %s); retrying in %.1fs",
                        self.wid, attempt, error, delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, DB_RETRY_MAX)
        return False

    def _supervisor_gone(self) -> None:
        log.warning("supervisor went away; draining")
        self._stop.set()

    def _send(self, messages: list[bytes], advisory: bool = False) -> None:
        if self._outbox is not None:
            self._outbox.send(messages, advisory)

    async def _report_load(self) -> None:
        assert self._runner is not None
        while True:
            await asyncio.sleep(0.5)
            server = self._runner.server
            n = len(server.connections) if server is not None else 0
            self._send([channel.LOAD + str(n).encode()], advisory=True)  # the next one will do

    def _on_channel(self) -> None:
        received = channel.recv_messages(self.chan)
        if received is None:
            log.warning("supervisor went away; draining")
            asyncio.get_running_loop().remove_reader(self.chan.fileno())
            self._stop.set()
            return
        for msg, fd in received:
            if fd is not None:
                self._accept(msg[1:], fd)
            elif msg[:1] == channel.METRICS_REQUEST:
                # chunked: an exposition of any size gets through (never one oversized datagram)
                self._send(
                    channel.chunks(channel.METRICS_MORE, channel.METRICS_REPLY, msg[1:] + b"\n", self._metrics())
                )

    def _metrics(self) -> bytes:
        """This worker's Prometheus exposition (the supervisor merges every worker's)."""
        from prometheus_client import REGISTRY, generate_latest

        registry = getattr(self.target, "metrics_registry", None) or REGISTRY
        try:
            return generate_latest(registry)
        except Exception:
            log.exception("collecting metrics failed")
            return b""

    def _accept(self, pre: bytes, fd: int) -> None:
        runner = self._runner
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return
        if runner is None or runner.server is None:
            sock.close()
            return
        self._tasks.spawn(self._adopt(runner.server, sock, pre), "adopt a connection")

    async def _adopt(self, server: Any, sock: socket.socket, pre: bytes) -> None:
        """Make `sock` one of aiohttp's connections, starting with the bytes already read."""
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: _Handoff(server(), pre), sock)
        except Exception as exc:  # noqa: BLE001 - e.g. the client already reset the connection
            log.debug("could not adopt a connection: %s", exc)
            sock.close()

    async def _drain(self) -> None:
        """Close every session ("server shutting down": clients reconnect elsewhere), then exit."""
        log.info("worker %d draining", self.wid)
        if self._closer is not None:
            try:
                await asyncio.wait_for(self._closer(), self.grace * 0.7)
            except Exception:
                log.exception("closing the app failed")
        if self._runner is not None:
            try:
                await asyncio.wait_for(self._runner.cleanup(), max(0.5, self.grace * 0.25))
            except TimeoutError:
                log.warning("worker %d: connections still open after the grace period; closing them", self.wid)
            except Exception:
                log.exception("aiohttp cleanup failed")
        try:
            asyncio.get_running_loop().remove_reader(self.chan.fileno())
        except (ValueError, OSError):
            pass
        if self._outbox is not None:
            self._outbox.close()
        self.chan.close()
        log.info("worker %d stopped", self.wid)


def main() -> None:
    wid = int(os.environ[ENV_ID])
    setup_logging(os.environ.get("SIOPG_LOG_LEVEL", "info"), os.environ.get("SIOPG_LOG_FORMAT", "text"), str(wid))
    chan = socket.socket(fileno=int(os.environ[ENV_FD]))
    database_url = os.environ.get(ENV_DATABASE) or None
    # Import and configure the app before any event loop runs: a siopg.Server created while a
    # loop runs starts its adapters at once, before we could give it the cluster adapter.
    try:
        target = load_app(os.environ[ENV_APP])
        if hasattr(target, "aiohttp_app") and hasattr(target, "close"):
            configure_siopg_server(target, wid, database_url)
    except Exception as exc:
        log.error("worker failed to load the app: %s", exc, exc_info=not isinstance(exc, AppLoadError))
        sys.exit(3)
    try:
        apply_gc_setting(os.environ.get(GC_ENV))  # `siopg serve --gc-threshold` (validated there)
    except ValueError as exc:
        log.warning("ignoring %s: %s", GC_ENV, exc)
    worker = Worker(
        wid,
        chan,
        target,
        database_url,
        float(os.environ.get(ENV_GRACE, "10")),
    )
    sys.exit(run_loop(worker.run()))


if __name__ == "__main__":
    main()
