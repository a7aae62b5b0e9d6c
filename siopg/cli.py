"""`siopg serve app:io` runs a Server on aiohttp + uvloop; `siopg migrate` runs DB migrations;
`siopg dashboard --database-url URL` serves the cluster dashboard on its own."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from siopg.errors import SiopgError

# GC names stay importable from here (tests and users import them from siopg.cli)
from siopg.runtime import (
    DEFAULT_GC_THRESHOLD,
    GC_ENV,
    AppLoadError,
    apply_gc_setting,
    load_app,
    parse_gc_setting,
    run,
)


def load_target(target: str) -> Any:
    """Import `module:attr` or `path/to/file.py:attr` (attr defaults to `io`): what to serve.

    Resolved by siopg.runtime.load_app (the loader the supervisor's workers use too); a
    callable that is neither a Server nor an aiohttp app is called as a factory.
    """
    try:
        obj = load_app(target)
    except AppLoadError as exc:
        raise SystemExit(f"siopg: {exc}") from None
    from aiohttp import web

    if callable(obj) and not hasattr(obj, "aiohttp_app") and not isinstance(obj, web.Application):
        obj = obj()  # a factory returning the server or an aiohttp app
    if not hasattr(obj, "aiohttp_app") and not isinstance(obj, web.Application):
        raise SystemExit(f"siopg: {target} is not a siopg.Server nor an aiohttp Application")
    return obj


async def serve(
    io: Any,
    host: str,
    port: int,
    app: Any = None,
    dashboard: bool = False,
    dashboard_auth: tuple[str, str] | None = None,
    metrics: bool = False,
    metrics_auth: tuple[str, str] | None = None,
    metrics_port: int | None = None,
) -> None:
    """Run until SIGINT/SIGTERM, then close the server gracefully.

    `dashboard` also serves siopg.dashboard at /dashboard (basic auth with `dashboard_auth`);
    `metrics` serves Prometheus metrics at /metrics (off by default: it is on the app's port).
    """
    from aiohttp import web

    from siopg.server.server import Server

    metrics_runner = None
    page = app is not None  # the caller's own aiohttp app: its root is a page of theirs
    if app is None:
        if isinstance(io, Server):
            app = io.aiohttp_app()
            if metrics or metrics_port is not None:
                metrics_runner = await _serve_metrics(io, app, host, metrics_port, metrics_auth)
            from siopg.dashboard import publish

            publish(io, app)  # its stats, for the cluster dashboard (here or `siopg dashboard`)
            if dashboard:
                from siopg.dashboard import setup as setup_dashboard

                setup_dashboard(io, app, auth=dashboard_auth)
        else:  # an aiohttp app with a Server attached: its shutdown hook closes the server
            if dashboard:
                raise SystemExit("siopg: --dashboard needs APP to be a siopg.Server (or a factory returning one)")
            app, io, page = io, None, True
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    try:
        await runner.setup()  # runs the app's startup hooks: the adapters connect here
    except (SiopgError, OSError) as exc:
        why = str(exc).removeprefix("siopg: ") or type(exc).__name__
        hint = " (is the database its adapter uses running and reachable?)" if isinstance(exc, OSError) else ""
        raise SystemExit(f"siopg: the app failed to start: {why}{hint}") from None
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        from siopg.supervisor.startup import listen_error

        raise SystemExit(f"siopg: {listen_error(host, port, exc)}") from None
    bound = runner.addresses[0][1] if runner.addresses else port  # the real one when port was 0
    where = f"http://{host}:{bound}/" + (f" (Socket.IO at {io.path})" if page and io is not None else "")
    print(f"siopg: serving on {where if page else f'http://{host}:{bound}{io.path}'}", flush=True)
    from siopg.supervisor.startup import endpoint_lines

    for line in endpoint_lines(host, bound, dashboard=dashboard and io is not None,
                               metrics=metrics and metrics_port is None):
        print(f"siopg: {line}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    try:
        await stop.wait()
    finally:
        logging.getLogger("siopg").info("shutting down")
        if io is not None:
            await io.close()
        await runner.cleanup()
        if metrics_runner is not None:
            await metrics_runner.cleanup()


async def _serve_metrics(io: Any, app: Any, host: str, port: int | None, auth: tuple[str, str] | None) -> Any:
    """/metrics on `app`, or on an app of its own at `port` (its runner returned, to clean up)."""
    from aiohttp import web

    from siopg.metrics import setup as setup_metrics

    if port is None:
        setup_metrics(io, app, auth=auth)
        return None
    own = web.Application()
    setup_metrics(io, own, auth=auth)
    runner = web.AppRunner(own, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0][1] if runner.addresses else port
    print(f"siopg: metrics on http://{host}:{bound}/metrics", flush=True)
    return runner


def credentials_arg(parser: argparse.ArgumentParser, flag: str, value: str | None) -> tuple[str, str] | None:
    """`USER:PASSWORD` of `flag` as a (user, password) tuple (None when not given); a usage error
    when it is malformed."""
    if not value:
        return None
    from siopg.dashboard.auth import parse_credentials

    try:
        return parse_credentials(value)
    except ValueError as exc:
        parser.error(f"{flag}: {exc}")


def add_dashboard_command(sub: Any) -> argparse.ArgumentParser:
    """`siopg dashboard`: the cluster dashboard alone, read from the database."""
    from siopg.supervisor.config import LOG_LEVELS, _env, _env_flag

    p: argparse.ArgumentParser = sub.add_parser(
        "dashboard", help="serve the cluster dashboard on its own, read from the database",
        description="Serve the cluster dashboard of the siopg servers that use DATABASE (the Postgres"
                    " adapter): no Socket.IO clients, read only, the same page every server shows.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--database-url", default=_env("SIOPG_DATABASE_URL"),
                   help="PostgreSQL URL the servers use (env SIOPG_DATABASE_URL)")
    p.add_argument("--schema", default="siopg", help="schema holding siopg's tables")
    p.add_argument("--host", default=_env("SIOPG_HOST", "127.0.0.1"), help="env SIOPG_HOST")
    p.add_argument("--port", type=int, default=int(_env("SIOPG_DASHBOARD_PORT", "3100") or 3100),
                   help="env SIOPG_DASHBOARD_PORT")
    p.add_argument("--path", default="/dashboard", help="URL path of the page")
    p.add_argument("--dashboard-auth", metavar="USER:PASSWORD", default=_env("SIOPG_DASHBOARD_AUTH"),
                   help="HTTP basic auth (env SIOPG_DASHBOARD_AUTH, which keeps the password out of `ps`)")
    p.add_argument("--dashboard-insecure", action="store_true", default=_env_flag("SIOPG_DASHBOARD_INSECURE"),
                   help="allow no --dashboard-auth on a non-loopback --host (env SIOPG_DASHBOARD_INSECURE=1)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default=_env("SIOPG_LOG_LEVEL", "info"),
                   help="env SIOPG_LOG_LEVEL")
    return p


def run_dashboard(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run `siopg dashboard` until SIGINT/SIGTERM; one line on stderr when it cannot start."""
    from siopg.supervisor.config import dashboard_exposure

    if not args.database_url:
        parser.error("--database-url (or SIOPG_DATABASE_URL) is required: the dashboard reads the cluster there")
    auth = credentials_arg(parser, "--dashboard-auth", args.dashboard_auth)
    refusal = dashboard_exposure(args.host, True, auth is not None, args.dashboard_insecure)
    if refusal:
        parser.error(refusal.replace("--dashboard without", "a dashboard without"))
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from siopg.dashboard import standalone

    try:
        run(standalone.serve(args.database_url, args.host, args.port, args.schema, auth, args.path))
    except (OSError, ValueError, RuntimeError) as exc:  # unreachable database, port in use, old schema
        print(f"siopg dashboard: {str(exc).removeprefix('siopg: ')}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - asyncpg errors: one line, no traceback
        print(f"siopg dashboard: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `siopg` command line (docs/reference.md is generated from it)."""
    import siopg
    import siopg.supervisor as supervisor  # imported here: `siopg.cli` stays light to import
    from siopg.supervisor.config import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(
        prog="siopg", description="Socket.IO server on aiohttp + PostgreSQL",
        epilog="start with `siopg serve app.py:io` (see `siopg serve --help`); every option: docs/reference.md",
    )
    parser.add_argument("--version", action="version", version=f"siopg {siopg.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="run a siopg.Server", formatter_class=DefaultsHelpFormatter)
    supervisor.add_common_arguments(serve_p)  # app, --host, --port, --log-level (SIOPG_* env)
    supervisor.add_arguments(serve_p)  # --workers, --database-url, ...
    supervisor.add_dashboard_arguments(serve_p)  # --dashboard, --dashboard-auth
    serve_p.description = (
        "APP is module:attr or path/to/app.py:attr (attr defaults to io): a siopg.Server, an aiohttp "
        "Application with one attached, or a callable returning either."
    )
    serve_p.add_argument(
        "--gc-threshold", metavar="N|off", default=os.environ.get(GC_ENV) or DEFAULT_GC_THRESHOLD,
        help=f"cyclic GC tuning applied after the app is imported: gc.freeze() and gen-0 threshold N"
             f" (or N,N1,N2); 'off' keeps Python's defaults (env {GC_ENV})",
    )
    sub.add_parser("migrate", help="create or upgrade siopg's schema in PostgreSQL", add_help=False)
    reload_p = sub.add_parser(
        "reload", help="rolling restart of a running `siopg serve --workers N`", formatter_class=DefaultsHelpFormatter,
        description="Ask the `siopg serve --workers N` running here for a rolling restart (SIGHUP to the pid in"
                    " its pid file): workers are replaced one at a time and their clients recover on the others."
                    " Give the same --port and --data-dir (or --pid-file) as the serve command.",
    )
    supervisor.add_reload_arguments(reload_p)
    add_dashboard_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import siopg.supervisor as supervisor
    from siopg.runtime import ignored_database_url_notice

    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "migrate":
        from siopg.adapter.postgres.migrations import main as migrate_main

        return int(migrate_main(list(rest)) or 0)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "reload":
        return int(supervisor.reload_from_args(args) or 0)
    if args.command == "dashboard":
        return run_dashboard(args, parser)
    notice = ignored_database_url_notice(args.database_url)
    if notice:
        print(f"siopg: {notice}", file=sys.stderr, flush=True)
    if args.dashboard_auth:
        args.dashboard = True  # --dashboard-auth means the dashboard is wanted
    dashboard_auth = credentials_arg(parser, "--dashboard-auth", args.dashboard_auth)
    from siopg.supervisor.config import dashboard_exposure, is_loopback

    refusal = dashboard_exposure(args.host, args.dashboard, dashboard_auth is not None,
                                 bool(getattr(args, "dashboard_insecure", False)))
    if refusal:
        parser.error(refusal)
    if args.metrics_max_namespaces < 1:
        parser.error("--metrics-max-namespaces must be >= 1")
    if args.dashboard and dashboard_auth is None and getattr(args, "dashboard_insecure", False):
        logging.getLogger("siopg").warning("the dashboard on %s has no authentication (--dashboard-insecure)",
                                           args.host)
    metrics_on = args.metrics or getattr(args, "metrics_port", None) is not None
    if metrics_on and not getattr(args, "metrics_auth", None) and not is_loopback(args.host):
        logging.getLogger("siopg").warning(
            "/metrics on %s has no authentication: anyone who reaches it reads namespace names and counts"
            " (set --metrics-auth USER:PASSWORD, or keep it behind something that authenticates)", args.host)
    try:
        parse_gc_setting(args.gc_threshold)
    except ValueError as exc:
        parser.error(f"--gc-threshold: {exc}")
    os.environ[GC_ENV] = args.gc_threshold  # supervisor workers inherit it and apply it themselves
    if getattr(args, "workers", 1) > 1 or getattr(args, "database_url", None) or getattr(args, "check", False):
        return int(supervisor.run_from_args(args) or 0)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    io = load_target(args.app)
    if hasattr(getattr(io, "metrics", None), "max_namespace_labels"):
        io.metrics.max_namespace_labels = args.metrics_max_namespaces
    apply_gc_setting(args.gc_threshold)
    metrics_auth = credentials_arg(parser, "--metrics-auth", getattr(args, "metrics_auth", None))
    run(serve(io, args.host, args.port, dashboard=args.dashboard, dashboard_auth=dashboard_auth,
              metrics=args.metrics, metrics_auth=metrics_auth, metrics_port=getattr(args, "metrics_port", None)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
