"""Shared fixtures: a real PostgreSQL for the tests that need one.

`SIOPG_TEST_DATABASE_URL` names a server to use (CI and developers may point it at a local
Postgres); without it an embedded PostgreSQL from `pgserver` is started once per session, so
the suite passes on a machine with no database running.

Nothing a test starts may outlive the session: every temporary directory of the session
(tempfile's, pytest's tmp_path, those of child processes through TMPDIR) lives under one root
made at start, and at the end any process still running there (an embedded PostgreSQL's
postmaster has its data directory as working directory) is reported, stopped, and fails the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_TMP: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Put every temporary directory of this session under one root of its own."""
    global _SESSION_TMP
    if _SESSION_TMP is None:
        _SESSION_TMP = Path(tempfile.mkdtemp(prefix="siopg-t"))
        os.environ["TMPDIR"] = str(_SESSION_TMP)  # child processes
        tempfile.tempdir = str(_SESSION_TMP)  # this one (and pytest's basetemp, made lazily)


def processes_under(root: Path) -> dict[int, str]:
    """pid -> command line of every process (not this one) working in `root` or naming it."""
    found: dict[int, str] = {}
    ancestors = {os.getpid(), os.getppid()}
    prefix = str(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ancestors:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if (cwd.startswith(prefix) or prefix in cmdline) and _running(int(entry.name)):
            found[int(entry.name)] = cmdline
    return found


def _running(pid: int) -> bool:
    """True while `pid` runs (a zombie does not; one of our children is reaped here)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_processes(pids: list[int], timeout: float = 10.0) -> None:
    """SIGINT (a postmaster's fast shutdown), then SIGKILL what is still there."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        alive = [pid for pid in pids if _running(pid)]
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_running(pid) for pid in alive):
            time.sleep(0.1)


@pytest.hookimpl(trylast=True)  # after the session fixtures are torn down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SESSION_TMP is None or not Path("/proc").is_dir():
        return
    leftovers = processes_under(_SESSION_TMP)
    if leftovers:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"{len(leftovers)} process(es) started by the tests outlived them (stopped now):"]
        lines += [f"  pid {pid}: {cmd[:200]}" for pid, cmd in sorted(leftovers.items())]
        for line in lines:
            if reporter is not None:
                reporter.write_line(line, red=True)
            else:
                print(line)
        stop_processes(list(leftovers))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A DSN of a real, empty-enough PostgreSQL database for this test session."""
    dsn = os.environ.get("SIOPG_TEST_DATABASE_URL")
    if dsn:
        yield dsn
        return
    import pgserver  # started lazily: only tests that need Postgres pay for it

    data_dir = tempfile.mkdtemp(prefix="siopg-test-pg-")
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
