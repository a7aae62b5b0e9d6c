"""The dashboard's aiohttp routes: the page, its JSON feed and its two static files."""

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
from siopg.dashboard.stats import History, Point, Reading, read, to_json

if TYPE_CHECKING:  # pragma: no cover
    from siopg.server.server import Server

logger = logging.getLogger("siopg.dashboard")

#: a reading younger than this is shared by every viewer (and every poll) instead of re-read
MIN_INTERVAL = 0.5
#: how long the adapter may take to answer server_count() before the page shows "?"
SERVER_COUNT_TIMEOUT = 2.0
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
    """State for one server's dashboard: the shared latest reading and the rate history."""

    def __init__(self, io: Server, path: str, auth: auth_mod.Auth, clock: Callable[[], float] = time.monotonic) -> None:
        self.io = io
        self.path = path
        self.auth = auth
        self.clock = clock
        self.history = History()
        self.static = _load_static()
        self.template = _environment().get_template("dashboard.html")
        self._latest: tuple[Reading, Point, int | None] | None = None
        self._lock = asyncio.Lock()
        # a baseline, so the first rates shown are averages since setup rather than zeros
        self.history.add(read(io, clock()))

    # data --------------------------------------------------------------------------------
    async def _count_servers(self) -> int | None:
        try:
            return int(await asyncio.wait_for(self.io.server_count(), SERVER_COUNT_TIMEOUT))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a cluster hiccup shows as "?" rather than breaking the page
            logger.debug("server_count() failed for the dashboard: %r", exc)
            return None

    async def snapshot(self) -> dict[str, Any]:
        """The stats document; re-read at most every MIN_INTERVAL whatever the number of viewers."""
        async with self._lock:
            latest = self._latest
            if latest is None or self.clock() - latest[0].t >= MIN_INTERVAL:
                server_count = await self._count_servers()
                reading = read(self.io, self.clock())
                latest = self._latest = (reading, self.history.add(reading), server_count)
        reading, point, server_count = latest
        doc = to_json(reading, point, self.history, server_count)
        doc["time"] = time.time()
        doc["pid"] = os.getpid()
        return doc

    # handlers ----------------------------------------------------------------------------
    def guarded(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            refusal = await auth_mod.check(self.auth, request)
            if refusal is not None:
                return refusal
            return await handler(request)

        return wrapper

    async def page(self, request: web.Request) -> web.Response:
        base = request.path.rstrip("/")  # right even when mounted in a sub-application
        stats = await self.snapshot()
        html = self.template.render(
            base=base,
            stats=stats,
            parser=self.io.parser,
            engine_path=self.io.path,
            adapter=type(self.io.sockets.adapter).__name__,
            static={name: f"{base}/static/{name}?v={f.version}" for name, f in self.static.items()},
        )
        headers = {**NO_STORE, "Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer"}
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers=headers)

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(request.path.rstrip("/") or "/")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(await self.snapshot(), headers=NO_STORE)

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


def setup(io: Server, app: web.Application, path: str = "/dashboard", auth: auth_mod.Auth = None) -> Dashboard:
    """Serve `io`'s live dashboard on `app` at `path` (plus `path`/stats.json and `path`/static/).

    `auth`: None (open: fine on localhost, never on a public address), a (user, password)
    tuple for HTTP basic auth (use it over HTTPS), or a callable(request) -> bool, sync or
    async, that must return True to let a request through. It guards every route.
    `app` need not be the app `io` is attached to: a separate internal-only app works too.
    """
    path = normalize_path(path)
    dashboard = Dashboard(io, path, auth_mod.validate(auth))
    guard = dashboard.guarded
    app.router.add_get(path, guard(dashboard.page))
    app.router.add_get(path + "/", guard(dashboard.redirect))
    app.router.add_get(path + "/stats.json", guard(dashboard.stats))
    app.router.add_get(path + "/static/{name}", guard(dashboard.static_file))
    return dashboard
