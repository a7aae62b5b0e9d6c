"""`siopg dashboard --database-url URL`: the cluster dashboard on its own (an ops box).

It serves no Socket.IO clients: it reads the servers' snapshots from the database, as every
server's own dashboard does, so it shows the same cluster. It needs the schema at version 6
or later (it never migrates: `siopg migrate` does) and only reads.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import asyncpg
from aiohttp import web

from siopg.adapter.postgres.migrations import DEFAULT_SCHEMA, check_schema, quote_ident, validate_schema
from siopg.adapter.postgres.stats_table import StatsTable
from siopg.dashboard import auth as auth_mod
from siopg.dashboard.board import PostgresBoard
from siopg.dashboard.web import Dashboard, mount, normalize_path

log = logging.getLogger("siopg.dashboard")


async def make_app(
    dsn: str, schema: str = DEFAULT_SCHEMA, auth: auth_mod.Auth = None, path: str = "/dashboard",
    heartbeat_timeout: float = 10.0,
) -> web.Application:
    """An aiohttp app serving the dashboard at `path` (and `/` redirecting there), reading
    `schema` through a small pool that the app closes on cleanup."""
    path = normalize_path(path)
    schema = validate_schema(schema)
    pool: Any = await asyncpg.create_pool(dsn, min_size=1, max_size=2,
                                          server_settings={"application_name": "siopg dashboard"})
    try:
        async with pool.acquire() as conn:
            await check_schema(conn, schema)
    except BaseException:
        await pool.close()
        raise
    table = StatsTable(pool, quote_ident(schema))
    meta = {"mode": "standalone", "schema": schema}
    app = web.Application()
    mount(app, Dashboard(PostgresBoard(lambda: table, heartbeat_timeout), path, auth_mod.validate(auth), meta))

    async def home(request: web.Request) -> web.Response:
        raise web.HTTPFound(path)

    async def close_pool(_: web.Application) -> None:
        await pool.close()

    app.router.add_get("/", home)
    app.on_cleanup.append(close_pool)
    return app


async def serve(dsn: str, host: str, port: int, schema: str = DEFAULT_SCHEMA, auth: auth_mod.Auth = None,
                path: str = "/dashboard") -> None:
    """Run the standalone dashboard until SIGINT/SIGTERM."""
    app = await make_app(dsn, schema, auth, path)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        print(f"siopg: dashboard on http://{host}:{bound}{normalize_path(path)}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
