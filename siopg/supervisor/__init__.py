"""Multi-worker serving: `siopg serve app:io --workers N` behind one port.

The supervisor owns the port and hands each accepted connection (fd plus the request head it
read) to the worker that owns the request's Engine.IO session, named by the sid's prefix; new
sessions go to the least-loaded worker. It never relays traffic. See docs in deploy/README.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from siopg.supervisor.config import (
    SupervisorConfig,
    add_arguments,
    add_common_arguments,
    add_dashboard_arguments,
    add_reload_arguments,
    config_from_args,
    default_pid_file,
)
from siopg.supervisor.logs import setup_logging
from siopg.supervisor.sid import make_sid_generator, worker_of
from siopg.supervisor.worker import worker_id, worker_sid_generator


def serve(
    app_ref: str,
    *,
    workers: int,
    host: str = "127.0.0.1",
    port: int = 3000,
    database_url: str | None = None,
    data_dir: str | Path = ".siopg-data",
    log_level: str = "info",
    log_format: str = "text",
    grace: float = 10.0,
    head_timeout: float = 5.0,
    pid_file: str | Path | None = None,
    node_id: str | None = None,
    worker_timeout: float = 30.0,
    check: bool = False,
) -> int:
    """Run `app_ref` on `workers` processes until stopped; returns the exit code."""
    from siopg.supervisor import supervisor

    config = SupervisorConfig(
        app_ref=app_ref, workers=workers, host=host, port=port, database_url=database_url,
        data_dir=Path(data_dir), log_level=log_level, log_format=log_format, grace=grace,
        head_timeout=head_timeout, pid_file=Path(pid_file) if pid_file else None, node_id=node_id,
        worker_timeout=worker_timeout,
    )
    setup_logging(config.log_level, config.log_format, "supervisor")
    return supervisor.check(config) if check else supervisor.run(config)


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point for `siopg serve` once `add_arguments` (and app/host/port/log-level) parsed."""
    from siopg.supervisor import supervisor

    setup_logging(args.log_level, getattr(args, "log_format", "text"), "supervisor")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        import logging

        logging.getLogger("siopg.supervisor").error("%s", exc)
        return 2
    return supervisor.check(config) if getattr(args, "check", False) else supervisor.run(config)


def reload_from_args(args: argparse.Namespace) -> int:
    """Entry point for `siopg reload`."""
    from siopg.supervisor import supervisor

    setup_logging("info", "text", "reload")
    pid_file = Path(args.pid_file) if args.pid_file else default_pid_file(Path(args.data_dir), args.port)
    return supervisor.reload(pid_file)


def main(argv: list[str] | None = None) -> int:
    """`python -m siopg.supervisor app:io --workers N` (the same as `siopg serve`)."""
    parser = argparse.ArgumentParser(prog="python -m siopg.supervisor")
    add_common_arguments(parser)
    add_arguments(parser)
    add_dashboard_arguments(parser)
    return run_from_args(parser.parse_args(argv))


__all__ = [
    "serve", "add_arguments", "add_common_arguments", "add_reload_arguments", "run_from_args",
    "reload_from_args", "main", "SupervisorConfig", "make_sid_generator", "worker_of",
    "worker_id", "worker_sid_generator",
]
