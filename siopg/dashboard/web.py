"""The dashboard's aiohttp routes: the page, its JSON feed and its two static files.

The page shows the whole cluster: `stats.json` is `cluster.merge` of what the board knows
(every server's snapshot from the database with the Postgres adapter; this server alone
otherwise), read at most every MIN_INTERVAL seconds whatever the number of viewers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import hdrs, web

from siopg.dashboard import auth as auth_mod
from siopg.dashboard.board import MIN_INTERVAL, Board, ServerBoard, publish
from siopg.dashboard.cluster import merge

if TYPE_CHECKING:  # pragma: no cover
    from siopg.server.server import Server

logger = logging.getLogger("siopg.dashboard")

#: how long the board (the database) may take to answer before the page says so
READ_TIMEOUT = 3.0
STATIC_FILES = ("dashboard.js", "dashboard.css")
# the page runs only its own script and talks only to its own origin
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
NO_STORE = {hdrs.CACHE_CONTROL: "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    version: str  # a content hash, put in the URL so browsers may cache the file for good


def _load_static() -> dict[str, StaticFile]:
    root = resources.files("siopg.dashboard") / "static"
    files = {}
    for name in STATIC_FILES:
        body = (root / name).read_bytes()
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        files[name] = StaticFile(body, content_type, hashlib.sha256(body).hexdigest()[:12])
    return files


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("siopg.dashboard", "templates"),
        autoescape=jinja2.select_autoescape(default=True),  # namespace names come from clients
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class Dashboard:
    """One dashboard: where its numbers come from (`board`), who may see it, the page."""

    def __init__(
        self,
        board: Board,
        path: str,
        auth: auth_mod.Auth,
        meta: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board = board
        self.path = path
        self.auth = auth
        self.meta = meta or {}  # shown in the page's header (adapter, parser, ...)
        self.clock = clock
        self.static = _load_static()
        self.template = _environment().get_template("dashboard.html")
        self._latest: tuple[float, dict[str, Any]] | None = None
        self._reading: asyncio.Future[tuple[float, dict[str, Any]]] | None = None

    # data --------------------------------------------------------------------------------
    async def snapshot(self) -> dict[str, Any]:
        """The stats document; re-read at most every MIN_INTERVAL whatever the number of viewers.

        Every viewer waits on the same read, READ_TIMEOUT at most: when the database stalls,
        a timed-out read is left to finish (a query on a stalled connection may not end at
        once when cancelled) rather than retried once per viewer in turn.
        """
        latest = self._latest
        if latest is None or self.clock() - latest[0] >= MIN_INTERVAL:
            reading = self._reading
            if reading is None:
                self._reading = asyncio.ensure_future(self._read())  # kept until it is done
                reading = self._reading
                reading.add_done_callback(self._read_done)
            latest = await asyncio.wait_for(asyncio.shield(reading), READ_TIMEOUT)
        doc = dict(latest[1])
        doc["time"] = time.time()
        doc["pid"] = os.getpid()
        return doc

    async def _read(self) -> tuple[float, dict[str, Any]]:
        entries, log_doc = await self.board.read()
        latest = self._latest = (self.clock(), merge(entries, log_doc))
        return latest

    def _read_done(self, reading: asyncio.Future[tuple[float, dict[str, Any]]]) -> None:
        if self._reading is reading:
            self._reading = None
        if not reading.cancelled():
            reading.exception()  # retrieved: the viewers that waited for it were told already

    # handlers ----------------------------------------------------------------------------
    def guarded(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            refusal = await auth_mod.check(self.auth, request)
            if refusal is not None:
                return refusal
            return await handler(request)

        return wrapper

    async def _stats_or_error(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return await self.snapshot(), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - shown on the page (a database outage, say)
            logger.debug("dashboard stats failed: %r", exc)
            return None, f"{type(exc).__name__}: {exc}"[:200] or "error"

    async def page(self, request: web.Request) -> web.Response:
        base = request.path.rstrip("/")  # right even when mounted in a sub-application
        stats, error = await self._stats_or_error()
        html = self.template.render(
            base=base,
            stats=stats or merge([]),
            error=error,
            meta=self.meta,
            static={name: f"{base}/static/{name}?v={f.version}" for name, f in self.static.items()},
        )
        headers = {**NO_STORE, "Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers=headers)

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(request.path.rstrip("/") or "/")

    async def stats(self, request: web.Request) -> web.Response:
        stats, error = await self._stats_or_error()
        if stats is None:
            return web.json_response({"error": error}, status=503, headers=NO_STORE)
        return web.json_response(stats, headers=NO_STORE)

    async def static_file(self, request: web.Request) -> web.Response:
        f = self.static.get(request.match_info["name"])
        if f is None:
            raise web.HTTPNotFound()
        headers = {hdrs.CACHE_CONTROL: "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if request.query.get("v") == f.version:
            headers[hdrs.CACHE_CONTROL] = "private, max-age=31536000, immutable"
        return web.Response(body=f.body, content_type=f.content_type, charset="utf-8", headers=headers)


def normalize_path(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError("path must be a str starting with '/'")
    path = path.rstrip("/")
    if not path:
        raise ValueError("path must not be '/': the dashboard needs a prefix of its own")
    if any(c in path for c in "{}?#"):
        raise ValueError("path must be a plain URL path (no '{', '}', '?' or '#')")
    return path


def mount(app: web.Application, dashboard: Dashboard) -> Dashboard:
    """Add `dashboard`'s routes (all guarded by its auth) to `app` under its path."""
    guard = dashboard.guarded
    path = dashboard.path
    app.router.add_get(path, guard(dashboard.page))
    app.router.add_get(path + "/", guard(dashboard.redirect))
    app.router.add_get(path + "/stats.json", guard(dashboard.stats))
    app.router.add_get(path + "/static/{name}", guard(dashboard.static_file))
    return dashboard


def setup(
    io: Server, app: web.Application, path: str = "/dashboard", auth: auth_mod.Auth = None, worker: str | None = None
) -> Dashboard:
    """Serve the cluster dashboard on `app` at `path` (plus `path`/stats.json and `path`/static/).

    `auth`: None (open: fine on localhost, never on a public address), a (user, password)
    tuple for HTTP basic auth (use it over HTTPS), or a callable(request) -> bool, sync or
    async, that must return True to let a request through. It guards every route.
    `app` need not be the app `io` is attached to: a separate internal-only app works too.
    It also makes `io` publish its stats snapshot while `app` runs (see `board.publish`);
    `worker` names this process on the page, as the logs do.
    """
    path = normalize_path(path)
    publisher = publish(io, app, worker)
    meta = {"adapter": type(io.sockets.adapter).__name__, "parser": str(io.parser), "path": str(io.path)}
    board = ServerBoard(io, publisher.sampler)
    return mount(app, Dashboard(board, path, auth_mod.validate(auth), meta))
