"""What a new user meets on the command line: `python -m siopg ...` run for real.

Each mistake a newcomer makes (a wrong app reference, a busy port, a bad or unreachable
database) ends in one actionable line and a non-zero exit, never a traceback; a plain
DATABASE_URL (Django's, Heroku's) is ignored out loud; `--check` writes nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import supervisor_helpers
from procs import wait_or_kill
from sv_helpers import REPO

private_database = supervisor_helpers.private_database  # a fixture: pytest finds it as a module attribute

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


def siopg_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SIOPG_DATABASE_URL")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def run_siopg(*args: str, cwd: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "siopg", *args], cwd=cwd, env=siopg_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def the_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed (asserting there is one, and no traceback)."""
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = output.splitlines()
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text("import siopg\n\nio = siopg.Server()\n")
    return tmp_path


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


class Served:
    """`python -m siopg serve ...` until stopped; stdout and stderr merged and read line by line."""

    def __init__(self, *args: str, cwd: Path, **env: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "siopg", "serve", *args], cwd=cwd, env=siopg_env(**env),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []

    def read_until(self, needle: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} never printed:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        wait_or_kill(self.proc, 15, 5)
        assert self.proc.stdout is not None
        self.lines += self.proc.stdout.read().splitlines()
        self.proc.stdout.close()


def test_version_and_help(app_dir: Path) -> None:
    import siopg

    version = run_siopg("--version", cwd=app_dir)
    assert (version.returncode, version.stdout.strip()) == (0, f"siopg {siopg.__version__}")
    secret_env = {"SIOPG_DASHBOARD_AUTH": "admin:hunter2pw", "SIOPG_DATABASE_URL": "postgresql://u:dbsecretpw@h/d"}
    serve_help = run_siopg("serve", "--help", cwd=app_dir, **secret_env).stdout
    flat = " ".join(serve_help.split())
    for shown in ("--port PORT TCP port; 0 picks a free one (env SIOPG_PORT) (default: 3000)",
                  "(default: 127.0.0.1)", "(default: 60.0)", "implies --dashboard"):
        assert shown in flat, shown
    assert "hunter2pw" not in serve_help and "dbsecretpw" not in serve_help  # secrets never echoed
    reload_help = " ".join(run_siopg("reload", "--help", cwd=app_dir).stdout.split())
    assert "rolling restart" in reload_help and "(SIGHUP to the pid in its pid file)" in reload_help
    assert "(default: 3000)" in reload_help
    migrate_help = " ".join(run_siopg("migrate", "--help", cwd=app_dir).stdout.split())
    assert "SIOPG_DATABASE_URL" in migrate_help and "(default: siopg)" in migrate_help


@pytest.mark.parametrize(("args", "expected"), [
    (("serve", "nope:io", "--port", "0"), "cannot import module 'nope'"),
    (("serve", "app.py:nope", "--port", "0"), "app.py has no attribute 'nope'"),
    (("serve", "missing.py:io", "--port", "0"), "no such file: missing.py"),
    (("migrate", "--database-url", "not a url"), "siopg migrate: cannot migrate not a url: invalid DSN"),
    (("migrate", "--database-url", UNREACHABLE), f"siopg migrate: cannot migrate {UNREACHABLE}:"),
    (("migrate",), "siopg migrate: no database given: pass --database-url URL or set SIOPG_DATABASE_URL"),
])
def test_mistakes_end_in_one_line(app_dir: Path, args: tuple[str, ...], expected: str) -> None:
    assert expected in the_line(run_siopg(*args, cwd=app_dir))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use_is_named(app_dir: Path, busy_port: int, workers: str) -> None:
    # with --workers the supervisor binds, before it would start any database
    result = run_siopg("serve", "app.py:io", "--port", str(busy_port), "--workers", workers,
                       "--data-dir", str(app_dir / "data"), cwd=app_dir)
    assert f"port {busy_port} on 127.0.0.1 is already in use" in the_line(result)
    assert "pick another --port" in result.stderr
    assert not (app_dir / "data").exists()


def test_a_missing_app_with_workers_fails_before_any_database_starts(app_dir: Path) -> None:
    result = run_siopg("serve", "nope:io", "--port", "0", "--workers", "2", "--data-dir", str(app_dir / "data"),
                       cwd=app_dir)
    assert "cannot import module 'nope'" in the_line(result)
    assert not (app_dir / "data").exists()  # no embedded PostgreSQL was started for a typo


def test_unreachable_database_at_start_waits_then_says_so(app_dir: Path) -> None:
    result = run_siopg("serve", "app.py:io", "--port", "0", "--database-url", UNREACHABLE, "--database-wait", "1",
                       "--data-dir", str(app_dir / "data"), cwd=app_dir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "level=ERROR" in line]
    assert len(errors) == 1 and "is PostgreSQL running and reachable?" in errors[0], result.stderr
    assert "--database-wait" in errors[0]


def test_an_app_whose_adapter_cannot_connect_fails_in_one_line(app_dir: Path) -> None:
    app = f"import siopg\n\nio = siopg.Server(adapter=siopg.PostgresAdapter({UNREACHABLE!r}))\n"
    (app_dir / "pgapp.py").write_text(app)
    result = run_siopg("serve", "pgapp.py:io", "--port", "0", cwd=app_dir)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("siopg: the app failed to start: ")


def test_plain_database_url_is_ignored_out_loud(app_dir: Path) -> None:
    served = Served("app.py:io", "--port", "0", cwd=app_dir, DATABASE_URL=UNREACHABLE)
    try:
        served.read_until("serving on http://127.0.0.1:")  # in memory: the unreachable URL was never used
    finally:
        served.stop()
    notices = [line for line in served.lines if "DATABASE_URL is set but siopg ignores it" in line]
    assert len(notices) == 1 and "SIOPG_DATABASE_URL" in notices[0]
    migrate = run_siopg("migrate", cwd=app_dir, DATABASE_URL=UNREACHABLE)
    assert migrate.returncode == 2 and "DATABASE_URL is set but siopg ignores it" in migrate.stderr


def test_check_writes_nothing_and_migrate_reads_the_same_variable(
    app_dir: Path, private_database: str,
) -> None:
    empty_database = private_database  # fresh: no siopg schema in it yet
    import asyncpg

    async def has_schema() -> bool:
        conn = await asyncpg.connect(empty_database)
        try:
            return bool(await conn.fetchval("SELECT to_regnamespace('siopg') IS NOT NULL"))
        finally:
            await conn.close()

    check = run_siopg("serve", "app.py:io", "--workers", "2", "--check", cwd=app_dir, SIOPG_DATABASE_URL=empty_database)
    assert check.returncode == 0, check.stderr
    assert "will apply migrations 1," in check.stderr
    assert not asyncio.run(has_schema())
    migrate = run_siopg("migrate", cwd=app_dir, SIOPG_DATABASE_URL=empty_database)
    assert migrate.returncode == 0 and "applied 1," in migrate.stdout, migrate.stderr
    assert asyncio.run(has_schema())
    again = run_siopg("serve", "app.py:io", "--workers", "2", "--check", cwd=app_dir, SIOPG_DATABASE_URL=empty_database)
    assert again.returncode == 0 and "is up to date" in again.stderr, again.stderr
    embedded = run_siopg("serve", "app.py:io", "--workers", "2", "--check", "--data-dir", str(app_dir / "data"),
                         cwd=app_dir)
    assert embedded.returncode == 0 and "not started by --check" in embedded.stderr, embedded.stderr
    assert not (app_dir / "data").exists()


def _get(url: str, auth: str) -> int:
    import base64

    token = base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_dashboard_auth_implies_the_dashboard_and_urls_are_printed(app_dir: Path) -> None:
    served = Served("app.py:io", "--port", "0", "--dashboard-auth", "admin:pw", "--metrics", cwd=app_dir)
    try:
        served.read_until("serving on")
        dashboard = served.read_until("dashboard on http://127.0.0.1:").split()[-1]
        metrics = served.read_until("Prometheus metrics on http://127.0.0.1:").split()[-1]
        assert _get(dashboard, "admin:pw") == 200
        assert _get(metrics, "admin:pw") == 200
    finally:
        served.stop()


def test_one_worker_is_singular_and_the_supervisor_prints_the_dashboard_url(app_dir: Path, sv_dsn: str) -> None:
    served = Served("app.py:io", "--port", "0", "--workers", "1", "--database-url", sv_dsn, "--dashboard-auth",
                    "admin:pw", "--data-dir", str(app_dir / "data"), cwd=app_dir)
    try:
        assert "with 1 worker\"" in served.read_until("serving app.py:io on")
        url = served.read_until("dashboard on http://").split()[-1].rstrip('"')
        assert _get(url, "admin:pw") == 200
    finally:
        served.stop()


def test_metrics_without_auth_on_a_public_host_is_said_out_loud(app_dir: Path) -> None:
    """/metrics is opt-in; on a non-loopback host without --metrics-auth the start says so."""
    warned = run_siopg("serve", "app.py:io", "--host", "0.0.0.0", "--metrics", "--check", cwd=app_dir)
    assert warned.returncode == 0, warned.stderr
    assert "/metrics on 0.0.0.0 has no authentication" in warned.stderr
    quiet = run_siopg("serve", "app.py:io", "--host", "0.0.0.0", "--metrics", "--metrics-auth", "u:p", "--check",
                      cwd=app_dir)
    local = run_siopg("serve", "app.py:io", "--metrics", "--check", cwd=app_dir)
    assert "has no authentication" not in quiet.stderr + local.stderr
