"""`siopg serve app:io` runs a Server on aiohttp + uvloop; `siopg migrate` runs DB migrations."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.util
import logging
import os
import signal
import sys
from typing import Any, Sequence

GC_ENV = "SIOPG_GC_THRESHOLD"
# Gen-0 threshold `siopg serve` sets by default. Python's 700 makes the cyclic GC run every few
# connections during a ramp-up, rescanning young objects that are all alive (37-47 % of the
# server's CPU in bench/connections.py); 100000 cuts CPU per connection by ~40 % at equal RSS.
DEFAULT_GC_THRESHOLD = "100000"


def parse_gc_setting(value: str | None) -> tuple[int, ...] | None:
    """`--gc-threshold`: "off" (Python's defaults) -> None, "N" or "N,N1,N2" -> thresholds.

    Raises ValueError on anything else. Only the generations given are changed.
    """
    text = (value if value is not None else DEFAULT_GC_THRESHOLD).strip().lower()
    if text in ("off", "default", "none", ""):
        return None
    parts = text.split(",")
    if len(parts) > 3:
        raise ValueError("expected N or N,N1,N2")
    try:
        thresholds = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected 'off' or a positive integer, got {value!r}") from None
    if any(t <= 0 for t in thresholds):
        raise ValueError("thresholds must be positive")
    return thresholds


def apply_gc_setting(value: str | None) -> tuple[int, ...] | None:
    """Tune the cyclic GC of a `siopg serve` process (never done by the library itself).

    Call after importing the app: gc.freeze() moves everything alive then (modules, the app)
    out of the collector's sight for good, and the higher gen-0 threshold makes collections
    rare; cyclic garbage is still collected. Returns the thresholds set (None: untouched).
    """
    thresholds = parse_gc_setting(value)
    if thresholds is None:
        return None
    gc.collect()
    gc.freeze()
    current = gc.get_threshold()
    gc.set_threshold(*(thresholds + current[len(thresholds):]))
    return gc.get_threshold()


def load_target(target: str) -> Any:
    """Import `module:attr` or `path/to/file.py:attr` (attr defaults to `io`)."""
    module_name, _, attr = target.partition(":")
    attr = attr or "io"
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        path = os.path.abspath(module_name)
        if not os.path.exists(path):
            raise SystemExit(f"siopg: no such file: {module_name}")
        name = os.path.splitext(os.path.basename(path))[0]
        sys.path.insert(0, os.path.dirname(path))
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"siopg: cannot import {module_name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, os.getcwd())
        module = importlib.import_module(module_name)
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise SystemExit(f"siopg: {module_name} has no attribute {attr!r}") from None
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
) -> None:
    """Run until SIGINT/SIGTERM, then close the server gracefully.

    `dashboard` also serves siopg.dashboard at /dashboard (basic auth with `dashboard_auth`);
    `metrics` serves Prometheus metrics at /metrics (off by default: it is on the app's port).
    """
    from aiohttp import web

    from siopg.server.server import Server

    if app is None:
        if isinstance(io, Server):
            app = io.aiohttp_app(metrics=metrics)
            if dashboard:
                from siopg.dashboard import setup as setup_dashboard

                setup_dashboard(io, app, auth=dashboard_auth)
        else:  # an aiohttp app with a Server attached: its shutdown hook closes the server
            if dashboard:
                raise SystemExit("siopg: --dashboard needs APP to be a siopg.Server (or a factory returning one)")
            app, io = io, None
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port  # the real one when port was 0
    print(f"siopg: serving on http://{host}:{bound}{io.path if io is not None else '/'}", flush=True)
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


def _run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        asyncio.run(coro)
        return
    if sys.version_info >= (3, 12):
        uvloop.run(coro)
    else:  # pragma: no cover
        uvloop.install()
        asyncio.run(coro)


def _supervisor() -> Any:
    """The multi-worker layer, if this installation has it (imported lazily)."""
    try:
        import siopg.supervisor as supervisor
    except ImportError:  # pragma: no cover - a trimmed install
        return None
    return supervisor


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="siopg", description="Socket.IO server on aiohttp + PostgreSQL")
    sub = parser.add_subparsers(dest="command", required=True)
    supervisor = _supervisor()
    serve_p = sub.add_parser("serve", help="run a siopg.Server")
    if supervisor is not None:
        supervisor.add_common_arguments(serve_p)  # app, --host, --port, --log-level (SIOPG_* env)
        supervisor.add_arguments(serve_p)  # --workers, --database-url, ...
        supervisor.add_dashboard_arguments(serve_p)  # --dashboard, --dashboard-auth
    else:  # pragma: no cover
        serve_p.add_argument("app")
        serve_p.add_argument("--host", default="127.0.0.1")
        serve_p.add_argument("--port", type=int, default=3000)
        serve_p.add_argument("--log-level", default="info")
        serve_p.add_argument("--dashboard", action="store_true")
        serve_p.add_argument("--dashboard-auth", metavar="USER:PASSWORD")
        serve_p.add_argument("--dashboard-insecure", action="store_true")
        serve_p.add_argument("--metrics", action="store_true")
        serve_p.add_argument("--metrics-max-namespaces", type=int, default=100)
    serve_p.description = (
        "APP is module:attr or path/to/app.py:attr (attr defaults to io): a siopg.Server, an aiohttp "
        "Application with one attached, or a callable returning either."
    )
    serve_p.add_argument(
        "--gc-threshold", metavar="N|off", default=os.environ.get(GC_ENV) or DEFAULT_GC_THRESHOLD,
        help=f"cyclic GC tuning applied after the app is imported: gc.freeze() and gen-0 threshold N"
             f" (or N,N1,N2); 'off' keeps Python's defaults (env {GC_ENV}, default {DEFAULT_GC_THRESHOLD})",
    )
    sub.add_parser("migrate", help="run the PostgreSQL adapter's migrations", add_help=False)
    if supervisor is not None:
        reload_p = sub.add_parser("reload", help="rolling restart of a running `siopg serve --workers N`")
        supervisor.add_reload_arguments(reload_p)
    args, rest = parser.parse_known_args(argv)
    if args.command == "migrate":
        from siopg.adapter.postgres.migrations import main as migrate_main

        return int(migrate_main(list(rest)) or 0)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "reload":
        return int(supervisor.reload_from_args(args) or 0)
    dashboard_auth = None
    if args.dashboard_auth:
        from siopg.dashboard.auth import parse_credentials

        try:
            dashboard_auth = parse_credentials(args.dashboard_auth)
        except ValueError as exc:
            parser.error(f"--dashboard-auth: {exc}")
    if supervisor is not None:
        from siopg.supervisor.config import dashboard_exposure

        refusal = dashboard_exposure(args.host, args.dashboard, dashboard_auth is not None,
                                     bool(getattr(args, "dashboard_insecure", False)))
        if refusal:
            parser.error(refusal)
    if args.metrics_max_namespaces < 1:
        parser.error("--metrics-max-namespaces must be >= 1")
    if args.dashboard and dashboard_auth is None and getattr(args, "dashboard_insecure", False):
        logging.getLogger("siopg").warning("the dashboard on %s has no authentication (--dashboard-insecure)",
                                           args.host)
    try:
        parse_gc_setting(args.gc_threshold)
    except ValueError as exc:
        parser.error(f"--gc-threshold: {exc}")
    os.environ[GC_ENV] = args.gc_threshold  # supervisor workers inherit it and apply it themselves
    if supervisor is not None and (
        getattr(args, "workers", 1) > 1 or getattr(args, "database_url", None) or getattr(args, "check", False)
    ):
        return int(supervisor.run_from_args(args) or 0)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    io = load_target(args.app)
    if hasattr(getattr(io, "metrics", None), "max_namespace_labels"):
        io.metrics.max_namespace_labels = args.metrics_max_namespaces
    apply_gc_setting(args.gc_threshold)
    _run(serve(io, args.host, args.port, dashboard=args.dashboard, dashboard_auth=dashboard_auth,
               metrics=args.metrics))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
