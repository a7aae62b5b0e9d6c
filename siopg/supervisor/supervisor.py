"""The supervisor process: database, listening socket, workers, signals.

SIGTERM / SIGINT (Ctrl-C): stop accepting, drain every worker (sessions persisted, transports
closed with "server shutting down" so clients reconnect), exit within the grace period; a
second SIGINT kills at once. SIGHUP (`siopg reload`): rolling restart, one worker at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from siopg._tasks import TaskSet
from siopg.runtime import AppLoadError, find_app
from siopg.runtime import run as run_loop
from siopg.supervisor import httphead
from siopg.supervisor.config import SupervisorConfig
from siopg.supervisor.database import (
    DatabaseError,
    EmbeddedPostgres,
    inspect_database,
    redact,
    wait_and_prepare,
)
from siopg.supervisor.metrics import MetricsEndpoint
from siopg.supervisor.pool import State, WorkerPool, worker_env
from siopg.supervisor.router import Router, RouterLimits, make_listener
from siopg.supervisor.startup import endpoint_lines, listen_error
from siopg.supervisor.worker import (
    ENV_APP,
    ENV_DASHBOARD,
    ENV_DASHBOARD_AUTH,
    ENV_DATABASE,
    ENV_METRICS_NAMESPACES,
    ENV_NODE,
)

log = logging.getLogger("siopg.supervisor")

HEALTH_PATHS = ("/healthz", "/readyz")
METRICS_PATH = "/metrics"
UNAUTHORIZED = (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"siopg metrics\"\r\n"
                b"Content-Type: text/plain\r\nContent-Length: 24\r\nConnection: close\r\n\r\n"
                b"authentication required\n")


def metrics_auth_ok(head: bytes, credentials: str) -> bool:
    """True when the request head carries the basic-auth `USER:PASSWORD` of --metrics-auth."""
    from siopg.dashboard.auth import basic_matches, parse_credentials

    user, password = parse_credentials(credentials)
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"authorization":
            return basic_matches(value.decode("latin-1"), user, password)
    return False


class Supervisor:
    def __init__(self, config: SupervisorConfig, database_url: str | None, listener: socket.socket) -> None:
        self.config = config
        self.database_url = database_url
        self.listener = listener
        env = worker_env()
        env[ENV_APP] = config.app_ref
        env["SIOPG_LOG_LEVEL"] = config.log_level
        env["SIOPG_LOG_FORMAT"] = config.log_format
        if config.node_id:
            env[ENV_NODE] = config.node_id
        else:
            env.pop(ENV_NODE, None)
        if database_url:
            env[ENV_DATABASE] = database_url
        else:
            env.pop(ENV_DATABASE, None)
        env.pop(ENV_DASHBOARD_AUTH, None)
        env[ENV_METRICS_NAMESPACES] = str(config.metrics_max_namespaces)
        if config.dashboard:
            env[ENV_DASHBOARD] = "1"
            if config.dashboard_auth:
                env[ENV_DASHBOARD_AUTH] = config.dashboard_auth
            elif config.dashboard_insecure:
                log.warning("the dashboard on %s has no authentication (--dashboard-insecure)", config.host)
        else:
            env.pop(ENV_DASHBOARD, None)
        self.pool = WorkerPool(config.workers, env, config.grace, config.ready_timeout, config.worker_timeout)
        self.router: Router | None = None
        self.metrics_listener: socket.socket | None = None
        self.metrics_router: Router | None = None
        self.metrics = MetricsEndpoint(self.pool, lambda: self.router)
        self.pool.on_metrics = self.metrics.on_reply
        self._done = asyncio.Event()
        self._exit_code = 0
        self._interrupts = 0
        self._tasks = TaskSet(log)  # rolling restarts started by SIGHUP

    def route(self, head: httphead.RequestHead, data: bytes, conn: socket.socket) -> bytes | None:
        if head.path in HEALTH_PATHS:
            return self._health(head.path)
        if self.config.metrics and self.config.metrics_port is None and head.path == METRICS_PATH:
            return self.route_metrics(head, data, conn)
        return self.pool.route(head, data, conn)

    def route_metrics(self, head: httphead.RequestHead, data: bytes, conn: socket.socket) -> bytes | None:
        """GET /metrics (behind --metrics-auth when set); on --metrics-port, nothing else."""
        if head.path != METRICS_PATH or head.method != "GET":
            return httphead.response(404, "Not Found", b"not found\n")
        auth = self.config.metrics_auth
        if auth and not metrics_auth_ok(data[: head.head_size], auth):
            return UNAUTHORIZED
        self.metrics.serve(conn)
        return None

    def _health(self, path: str) -> bytes:
        if path == "/healthz":
            return httphead.response(200, "OK", b"ok\n")
        ready = self.pool.ready_count()
        if ready and not self.pool.stopping:
            return httphead.response(200, "OK", f"ready: {ready}/{self.config.workers} workers\n".encode())
        return httphead.response(503, "Service Unavailable", f"not ready: {ready} workers\n".encode())

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.pool.on_fatal = self._fatal
        for sig, handler in (
            (signal.SIGTERM, self._on_term),
            (signal.SIGINT, self._on_int),
            (signal.SIGHUP, self._on_hup),
        ):
            loop.add_signal_handler(sig, handler)
        await self.pool.start()
        self.router = Router(
            loop,
            self.listener,
            self.route,
            RouterLimits(max_head_size=self.config.max_head_size, head_timeout=self.config.head_timeout,
                         max_pending=self.config.max_pending_heads),
        )
        # Accept right away: requests queue in the worker channels until the workers are ready.
        self.router.start()
        if self.metrics_listener is not None:  # --metrics-port: /metrics alone on a port of its own
            self.metrics_router = Router(loop, self.metrics_listener, self.route_metrics,
                                         RouterLimits(max_head_size=self.config.max_head_size,
                                                      head_timeout=self.config.head_timeout, max_pending=64))
            self.metrics_router.start()
        ready_task = loop.create_task(self._await_ready())
        await self._done.wait()
        ready_task.cancel()
        await self._shutdown()
        return self._exit_code

    async def _await_ready(self) -> None:
        # A slot whose worker waits for its database (or was restarted) is awaited again: the
        # "serving" line comes once every slot has a ready worker, however long that takes.
        while not await self.pool.wait_ready():
            if self.pool.stopping:
                return
            log.warning("not every worker is ready yet (%d/%d); still waiting", self.pool.ready_count(),
                        self.config.workers)
            await asyncio.sleep(0.5)
        host, port = self.listener.getsockname()[:2]
        n = self.config.workers
        log.info("serving %s on http://%s:%d with %d worker%s", self.config.app_ref, host, port, n, "s" * (n != 1))
        for line in endpoint_lines(host, port, dashboard=self.config.dashboard,
                                   metrics=self.config.metrics and self.config.metrics_port is None):
            log.info("%s", line)

    def _spawn(self, coro: Coroutine[Any, Any, object], what: str) -> None:
        self._tasks.spawn(coro, what)

    def _fatal(self, why: str) -> None:
        log.error("%s; stopping", why)
        self._exit_code = 1
        self._done.set()

    def _on_term(self) -> None:
        log.info("SIGTERM: draining")
        self._done.set()

    def _on_int(self) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            log.info("interrupted: draining (Ctrl-C again to kill)")
            self._done.set()
        else:
            log.warning("second interrupt: killing workers")
            self.pool.kill_all()

    def _on_hup(self) -> None:
        if not self._done.is_set():
            log.info("SIGHUP: rolling restart")
            self._spawn(self.pool.rolling_restart(), "rolling restart")

    async def _shutdown(self) -> None:
        if self.router is not None:
            self.router.stop_accepting()
        await self.pool.stop()
        if self.router is not None:
            self.router.close()
        if self.metrics_router is not None:
            self.metrics_router.close()
        self._tasks.cancel()
        log.info("stopped")


def _write_pid_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")


async def _main(config: SupervisorConfig, database_url: str | None, listener: socket.socket,
                metrics_listener: socket.socket | None = None) -> int:
    supervisor = Supervisor(config, database_url, listener)
    supervisor.metrics_listener = metrics_listener
    return await supervisor.run()


def resolve_database(config: SupervisorConfig) -> tuple[str | None, EmbeddedPostgres | None]:
    """The URL workers use: the given one, an embedded server for N > 1, or none (in-memory)."""
    if config.database_url:
        return config.database_url, None
    if config.workers > 1:
        embedded = EmbeddedPostgres(config.data_dir)
        return embedded.start(), embedded
    return None, None


def run(config: SupervisorConfig) -> int:
    """Run the supervisor until it is stopped; returns the process exit code."""
    try:
        find_app(config.app_ref)  # a typo fails here, before a database and workers start
    except AppLoadError as exc:
        log.error("%s", exc)
        return 1
    try:
        listener = make_listener(config.host, config.port, config.backlog, max(1, int(config.head_timeout)))
    except OSError as exc:
        log.error("%s", listen_error(config.host, config.port, exc))
        return 2
    metrics_listener = None
    if config.metrics_port is not None:
        try:
            metrics_listener = make_listener(config.host, config.metrics_port, 64, max(1, int(config.head_timeout)))
        except OSError as exc:
            listener.close()
            log.error("%s", listen_error(config.host, config.metrics_port, exc))
            return 2
    if metrics_listener is not None:
        bound = metrics_listener.getsockname()[1]
        log.info("metrics on http://%s:%d%s", config.host, bound, METRICS_PATH)
    embedded: EmbeddedPostgres | None = None
    pid_file = config.effective_pid_file
    try:
        database_url, embedded = resolve_database(config)
        if database_url:
            version = wait_and_prepare(database_url, config.database_wait)
            log.info("database %s ready (%s)", redact(database_url), version.split(",")[0])
        _write_pid_file(pid_file)
        return run_loop(_main(config, database_url, listener, metrics_listener))
    except DatabaseError as exc:
        log.error("%s", exc)
        return 2
    finally:
        listener.close()
        if metrics_listener is not None:
            metrics_listener.close()
        if embedded is not None:
            embedded.stop()
        with contextlib.suppress(OSError):
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()


def check(config: SupervisorConfig) -> int:
    """`--check`: load the app as a worker would, reach the database and read its schema; 0 if fine."""
    from siopg.runtime import AppLoadError, load_app

    ok = True
    try:
        obj = load_app(config.app_ref)
        if not (hasattr(obj, "aiohttp_app") or callable(obj)):
            raise AppLoadError(f"{config.app_ref} is a {type(obj).__name__}, not a siopg.Server or aiohttp app",
                               config.app_ref)
        log.info("app %s: ok (%s)", config.app_ref, type(obj).__name__)
    except Exception as exc:  # noqa: BLE001 - `check` reports any failure to load the app, then exits 1
        log.error("app %s: %s", config.app_ref, exc)
        ok = False
    try:
        _check_database(config)
    except DatabaseError as exc:
        log.error("database: %s", exc)
        ok = False
    return 0 if ok else 1


def _check_database(config: SupervisorConfig) -> None:
    """Report what `serve` would do with the database, writing nothing (raises DatabaseError)."""
    if config.database_url:
        version, current, pending = inspect_database(config.database_url)
        where = f"database {redact(config.database_url)} ({version.split(',')[0]})"
        if pending:
            log.info("%s: ok; schema 'siopg' is at version %d, `siopg serve` will apply migrations %s at start",
                     where, current, ", ".join(map(str, pending)))
        else:
            log.info("%s: ok; schema 'siopg' is up to date (version %d)", where, current)
    elif config.workers > 1:
        EmbeddedPostgres.ensure_available()
        log.info("database: `siopg serve` will start an embedded PostgreSQL in %s (not started by --check)",
                 (config.data_dir / "pg").resolve())
    else:
        log.info("database: none needed (1 worker, in-memory adapter)")


def reload(pid_file: Path) -> int:
    """`siopg reload`: ask the running supervisor for a rolling restart (SIGHUP)."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except FileNotFoundError:
        log.error("no pid file at %s: is `siopg serve --workers N` running here?", pid_file)
        return 1
    except (ValueError, ProcessLookupError, PermissionError) as exc:
        log.error("cannot signal the supervisor from %s: %s", pid_file, exc)
        return 1
    log.info("rolling restart requested (pid %d)", pid)
    return 0


__all__ = ["Supervisor", "run", "check", "reload", "State"]
