"""Settings of `siopg serve --workers N`: flags, each with a `SIOPG_*` environment default."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siopg.runtime import DATABASE_ENV, database_url_from_env

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(slots=True)
class SupervisorConfig:
    app_ref: str
    workers: int = 2
    host: str = "127.0.0.1"
    port: int = 3000
    database_url: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(".siopg-data"))
    log_level: str = "info"
    log_format: str = "text"
    grace: float = 10.0           # seconds SIGTERM waits for workers to drain
    head_timeout: float = 5.0     # seconds a client has to send its request head
    max_head_size: int = 16384
    backlog: int = 2048
    pid_file: Path | None = None
    ready_timeout: float = 30.0   # seconds a starting worker has to report ready
    node_id: str | None = None    # this machine's name in sids, for load balancers (deploy/nginx)
    worker_timeout: float = 30.0  # a worker whose loop is blocked this long is killed (0: never)
    dashboard: bool = False       # each worker serves siopg.dashboard at /dashboard
    dashboard_auth: str | None = None  # USER:PASSWORD for it (HTTP basic auth)
    dashboard_insecure: bool = False  # allow an unauthenticated dashboard on a non-loopback host
    metrics: bool = False         # serve the merged Prometheus /metrics on the port
    metrics_auth: str | None = None  # USER:PASSWORD that /metrics requires (HTTP basic auth)
    metrics_port: int | None = None  # serve /metrics on this port instead of the app's (implies metrics)
    metrics_max_namespaces: int = 100  # distinct namespace labels per worker (the rest folded)
    database_wait: float = 60.0   # seconds the supervisor waits for an unreachable database at start
    max_pending_heads: int = 4096  # connections still sending their request head (more: oldest cut)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be in 0..65535")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
        self.log_level = self.log_level.lower()
        self.data_dir = Path(self.data_dir)
        if self.dashboard_auth:
            from siopg.dashboard.auth import parse_credentials

            parse_credentials(self.dashboard_auth)  # fail here, not in every worker
        if self.metrics_auth:
            from siopg.dashboard.auth import parse_credentials

            parse_credentials(self.metrics_auth)
        if self.metrics_port is not None:
            if not 0 <= self.metrics_port <= 65535:
                raise ValueError("metrics port must be in 0..65535")
            self.metrics = True
        if self.metrics_max_namespaces < 1:
            raise ValueError("metrics max namespaces must be >= 1")
        if self.max_pending_heads < 1:
            raise ValueError("max pending heads must be >= 1")
        refusal = dashboard_exposure(self.host, self.dashboard, bool(self.dashboard_auth), self.dashboard_insecure)
        if refusal:
            raise ValueError(refusal)
        if self.node_id is not None:
            from siopg.supervisor.sid import NODE_RE

            if not NODE_RE.match(self.node_id):
                raise ValueError("node id must be 1-16 characters of a-z and 0-9")

    @property
    def effective_pid_file(self) -> Path:
        return self.pid_file or default_pid_file(self.data_dir, self.port)


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    import ipaddress

    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def dashboard_exposure(host: str, dashboard: bool, has_auth: bool, insecure: bool) -> str | None:
    """Why `--dashboard` must be refused (None: fine).

    An unauthenticated dashboard shows every namespace, counter and the cluster's size to
    anyone who can reach the port: only on a loopback address, or with an explicit
    `--dashboard-insecure` (e.g. behind a proxy that authenticates).
    """
    if not dashboard or has_auth or insecure or is_loopback(host):
        return None
    return (f"--dashboard without --dashboard-auth on {host!r} (not a loopback address) would be open to"
            " anyone who reaches the port: set --dashboard-auth USER:PASSWORD, or pass"
            " --dashboard-insecure if something in front of siopg authenticates")


def default_pid_file(data_dir: Path, port: int) -> Path:
    return Path(data_dir) / f"siopg-{port}.pid"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_flag(name: str) -> bool:
    return (_env(name) or "").strip().lower() in ("1", "true", "yes", "on")


SECRET_OPTIONS = frozenset({"database_url", "dashboard_auth"})  # may hold a password: never echoed


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """`--help` that ends each option's text with its default (as the environment sets it),
    except for unset, off and secret options."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default: Any = action.default
        if (not action.option_strings or default in (None, False, "") or default is argparse.SUPPRESS
                or action.dest in SECRET_OPTIONS or "%(default)" in text):
            return text
        return f"{text} (default: %(default)s)"


def add_dashboard_arguments(parser: argparse.ArgumentParser) -> None:
    """`--dashboard` and `--dashboard-auth` of `siopg serve` (env SIOPG_DASHBOARD, SIOPG_DASHBOARD_AUTH)."""
    g = parser.add_argument_group("live dashboard (siopg.dashboard)")
    g.add_argument("--dashboard", action="store_true", default=_env_flag("SIOPG_DASHBOARD"),
                   help="serve the cluster dashboard at /dashboard (env SIOPG_DASHBOARD=1); whichever worker"
                        " answers, it shows the whole cluster")
    g.add_argument("--dashboard-auth", metavar="USER:PASSWORD", default=_env("SIOPG_DASHBOARD_AUTH"),
                   help="protect the dashboard with HTTP basic auth; implies --dashboard (env"
                        " SIOPG_DASHBOARD_AUTH, which keeps the password out of `ps`)")
    g.add_argument("--dashboard-insecure", action="store_true", default=_env_flag("SIOPG_DASHBOARD_INSECURE"),
                   help="allow --dashboard without --dashboard-auth on a non-loopback --host (refused"
                        " otherwise; env SIOPG_DASHBOARD_INSECURE=1)")
    g.add_argument("--metrics", action="store_true", default=_env_flag("SIOPG_METRICS"),
                   help="serve Prometheus metrics at /metrics on the app's port (off by default: anyone who"
                        " reaches the port could read and load it; env SIOPG_METRICS=1)")
    g.add_argument("--metrics-auth", metavar="USER:PASSWORD", default=_env("SIOPG_METRICS_AUTH"),
                   help="require HTTP basic auth on /metrics (env SIOPG_METRICS_AUTH; Prometheus: basic_auth)")
    g.add_argument("--metrics-port", type=int, default=int(_env("SIOPG_METRICS_PORT", "0") or 0) or None,
                   help="serve /metrics on this port (same --host) instead of the app's port; implies"
                        " --metrics (env SIOPG_METRICS_PORT)")
    g.add_argument("--metrics-max-namespaces", type=int,
                   default=int(_env("SIOPG_METRICS_MAX_NAMESPACES", "100") or 100),
                   help="distinct namespace label values in the metrics; past it (and for names over 256"
                        " bytes) dynamic namespaces are counted under their parent's label, others under"
                        " \"other\" (env SIOPG_METRICS_MAX_NAMESPACES)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the multi-worker flags of `siopg serve` (defaults come from SIOPG_* env vars)."""
    g = parser.add_argument_group("workers (siopg.supervisor)")
    g.add_argument("--workers", type=int, default=int(_env("SIOPG_WORKERS", "1") or 1),
                   help="worker processes behind one port (env SIOPG_WORKERS)")
    g.add_argument("--database-url", metavar="URL", default=database_url_from_env(),
                   help=f"PostgreSQL URL the workers coordinate through, migrated at start (env {DATABASE_ENV};"
                        " a plain DATABASE_URL is ignored); without it and with several workers an embedded"
                        " PostgreSQL is started")
    g.add_argument("--data-dir", default=_env("SIOPG_DATA_DIR", ".siopg-data"),
                   help="directory of the embedded PostgreSQL and the pid file "
                        "(env SIOPG_DATA_DIR)")
    g.add_argument("--log-format", choices=("text", "json"), default=_env("SIOPG_LOG_FORMAT", "text"),
                   help="log lines as logfmt text or JSON (env SIOPG_LOG_FORMAT)")
    g.add_argument("--grace", type=float, default=float(_env("SIOPG_GRACE", "10") or 10),
                   help="seconds SIGTERM gives workers to drain before they are killed (env SIOPG_GRACE)")
    g.add_argument("--head-timeout", type=float, default=float(_env("SIOPG_HEAD_TIMEOUT", "5") or 5),
                   help="seconds a client has to send its request head (env SIOPG_HEAD_TIMEOUT)")
    g.add_argument("--worker-timeout", type=float, default=float(_env("SIOPG_WORKER_TIMEOUT", "30") or 30),
                   help="kill and restart a worker whose event loop is blocked this many seconds; 0 = never"
                        " (env SIOPG_WORKER_TIMEOUT)")
    g.add_argument("--database-wait", type=float, default=float(_env("SIOPG_DATABASE_WAIT", "60") or 60),
                   help="seconds the supervisor waits at start for an unreachable database before giving up"
                        " (env SIOPG_DATABASE_WAIT; 0 = fail at once)")
    g.add_argument("--max-pending-heads", type=int, default=int(_env("SIOPG_MAX_PENDING_HEADS", "4096") or 4096),
                   help="connections that may be sending their request head at once; past it the oldest is"
                        " cut (slowloris); capped to half the open-files limit (env SIOPG_MAX_PENDING_HEADS)")
    g.add_argument("--pid-file", default=_env("SIOPG_PID_FILE"),
                   help="where the supervisor writes its pid for `siopg reload` "
                        "(env SIOPG_PID_FILE; default DATA_DIR/siopg-PORT.pid)")
    g.add_argument("--node-id", default=_env("SIOPG_NODE_ID"),
                   help="this machine's name (a-z0-9) put in every sid, so a load balancer in front"
                        " of several machines can route each session home (env SIOPG_NODE_ID)")
    g.add_argument("--check", action="store_true",
                   help="load the app, reach the database and read its schema version, then exit (0 = ok);"
                        " writes nothing (no migrations, no embedded PostgreSQL started)")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """`app`, --host, --port, --log-level: for a parser that does not define them already."""
    parser.add_argument("app", help="module:attr or path/to/app.py:attr (attr defaults to io)")
    parser.add_argument("--host", default=_env("SIOPG_HOST", "127.0.0.1"),
                        help="address to listen on; 0.0.0.0 for every interface (env SIOPG_HOST)")
    parser.add_argument("--port", type=int, default=int(_env("SIOPG_PORT", "3000") or 3000),
                        help="TCP port; 0 picks a free one (env SIOPG_PORT)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=_env("SIOPG_LOG_LEVEL", "info"),
                        help="how much to log (env SIOPG_LOG_LEVEL)")


def config_from_args(args: argparse.Namespace) -> SupervisorConfig:
    return SupervisorConfig(
        app_ref=args.app,
        workers=args.workers,
        host=args.host,
        port=args.port,
        database_url=args.database_url or None,
        data_dir=Path(args.data_dir),
        log_level=args.log_level,
        log_format=getattr(args, "log_format", "text"),
        grace=args.grace,
        head_timeout=args.head_timeout,
        pid_file=Path(args.pid_file) if getattr(args, "pid_file", None) else None,
        node_id=getattr(args, "node_id", None) or None,
        worker_timeout=getattr(args, "worker_timeout", 30.0),
        dashboard=bool(getattr(args, "dashboard", False) or getattr(args, "dashboard_auth", None)),
        dashboard_auth=getattr(args, "dashboard_auth", None) or None,
        dashboard_insecure=bool(getattr(args, "dashboard_insecure", False)),
        metrics=bool(getattr(args, "metrics", False)),
        metrics_auth=getattr(args, "metrics_auth", None) or None,
        metrics_port=getattr(args, "metrics_port", None),
        metrics_max_namespaces=int(getattr(args, "metrics_max_namespaces", 100)),
        database_wait=float(getattr(args, "database_wait", 60.0)),
        max_pending_heads=int(getattr(args, "max_pending_heads", 4096)),
    )


def add_reload_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `siopg reload`: which supervisor to signal."""
    parser.add_argument("--pid-file", default=_env("SIOPG_PID_FILE"),
                        help="the supervisor's pid file (env SIOPG_PID_FILE)")
    parser.add_argument("--data-dir", default=_env("SIOPG_DATA_DIR", ".siopg-data"),
                        help="used to find the default pid file (env SIOPG_DATA_DIR)")
    parser.add_argument("--port", type=int, default=int(_env("SIOPG_PORT", "3000") or 3000),
                        help="used to find the default pid file (env SIOPG_PORT)")
