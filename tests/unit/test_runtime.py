"""siopg.runtime (the one app loader, GC setting and uvloop runner shared by the cli and the
supervisor) and the launcher hooks of Server (set_adapter_factory / set_sid_generator)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import siopg
from siopg import runtime
from siopg.adapter.memory import InMemoryAdapter
from siopg.runtime import AppLoadError, load_app, split_ref

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("app", ("app", "io")),
        ("app:", ("app", "io")),
        ("app:sio", ("app", "sio")),
        ("pkg.mod:ns.inner", ("pkg.mod", "ns.inner")),
        ("dir/app.py", ("dir/app.py", "io")),
        ("dir/app.py:make", ("dir/app.py", "make")),
        ("C:/srv/app.py:io", ("C:/srv/app.py", "io")),  # the last colon splits: a path may hold one
    ],
)
def test_split_ref(ref: str, expected: tuple[str, str]) -> None:
    assert split_ref(ref) == expected


def test_split_ref_rejects_an_empty_module() -> None:
    with pytest.raises(AppLoadError, match="invalid app reference") as info:
        split_ref(":io")
    assert info.value.ref == ":io"


def test_file_app_is_the_module_its_siblings_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file is loaded under its own name, so `import h8c_app` in the app's code gets the same
    module (one Server, not two), and loading it again reuses it."""
    (tmp_path / "h8c_app.py").write_text("import itertools\nio = object()\ncount = itertools.count()\n")
    (tmp_path / "h8c_sibling.py").write_text("import h8c_app\nsame = h8c_app.io\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        io = load_app("h8c_app.py")
        assert load_app("h8c_sibling.py:same") is io
        assert load_app(str(tmp_path / "h8c_app.py") + ":io") is io
        assert load_app("h8c_app:io") is io
    finally:
        for name in ("h8c_app", "h8c_sibling"):
            sys.modules.pop(name, None)


def test_a_file_whose_import_fails_leaves_no_module_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "h8c_broken.py").write_text("raise RuntimeError('app bug')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(RuntimeError, match="app bug"):  # the app's own error, unchanged
        load_app("h8c_broken.py")
    assert "h8c_broken" not in sys.modules


def test_cli_reports_load_errors_in_one_line(tmp_path: Path) -> None:
    """`siopg serve` keeps its messages ("siopg: ..."), now from the shared loader."""
    (tmp_path / "h8c_cliapp.py").write_text("io = 1\n")
    cases = {
        "missing.py:io": "siopg: no such file: missing.py",
        "h8c_cliapp.py:nope": "siopg: h8c_cliapp.py has no attribute 'nope'",
        "h8c_cliapp.py:io": "siopg: h8c_cliapp.py:io is not a siopg.Server nor an aiohttp Application",
        "h8c_no_such_module:io": "siopg: cannot import module 'h8c_no_such_module'",
    }
    for ref, message in cases.items():
        proc = subprocess.run(
            [sys.executable, "-m", "siopg", "serve", ref, "--port", "0"],
            cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert proc.returncode == 1, (ref, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1].startswith(message), (ref, proc.stderr)


def test_run_returns_the_coroutine_result() -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert runtime.run(main()).startswith("uvloop")


# -- Server hooks for launchers -------------------------------------------------------------
class _Tagged(InMemoryAdapter):
    """An adapter a launcher chose (tells which factory made it)."""


def test_set_adapter_factory_replaces_existing_and_future_adapters() -> None:
    io = siopg.Server()
    chat = io.of("/chat")
    assert io.adapter_factory is InMemoryAdapter
    io.set_adapter_factory(_Tagged)
    assert io.adapter_factory is _Tagged
    assert isinstance(io.sockets.adapter, _Tagged) and isinstance(chat.adapter, _Tagged)
    assert isinstance(io.of("/later").adapter, _Tagged)


async def test_launcher_hooks_refuse_a_started_server() -> None:
    io = siopg.Server()
    await io._startup()
    try:
        with pytest.raises(RuntimeError, match="before the server starts"):
            io.set_adapter_factory(_Tagged)
        with pytest.raises(RuntimeError, match="before the server starts"):
            io.set_sid_generator(lambda: "x")
        assert not isinstance(io.sockets.adapter, _Tagged)
    finally:
        await io.close()


def test_set_sid_generator() -> None:
    io = siopg.Server()
    io.set_sid_generator(lambda: "w3-abc")
    assert io.engine.options.sid_generator() == "w3-abc"


def test_worker_gives_a_default_server_the_postgres_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor's worker (not the Server) decides on Postgres: only for an app that kept
    the default adapter; an adapter the app chose is kept. No database is contacted here."""
    from siopg.adapter.postgres import PostgresAdapter
    from siopg.supervisor.worker import configure_siopg_server

    monkeypatch.delenv("SIOPG_NODE_ID", raising=False)
    default = siopg.Server()
    configure_siopg_server(default, 4, "postgresql://nowhere/db")
    assert isinstance(default.adapter_factory, PostgresAdapter)
    assert type(default.sockets.adapter).__name__ == "PostgresNamespaceAdapter"
    chosen = siopg.Server(adapter=_Tagged)
    configure_siopg_server(chosen, 4, "postgresql://nowhere/db")
    assert chosen.adapter_factory is _Tagged and isinstance(chosen.sockets.adapter, _Tagged)
    from siopg.supervisor.sid import worker_of

    assert worker_of(default.engine.options.sid_generator()) == 4 == worker_of(chosen.engine.options.sid_generator())


def test_find_app_checks_a_reference_without_importing_it(tmp_path, monkeypatch):
    from siopg.runtime import find_app

    (tmp_path / "h9_sideeffect.py").write_text("open('imported', 'w').close()\nio = 1\n")
    monkeypatch.chdir(tmp_path)
    find_app("h9_sideeffect:io")
    find_app("h9_sideeffect.py:io")
    assert not (tmp_path / "imported").exists()  # found, not run
    with pytest.raises(AppLoadError, match="cannot import module 'h9_missing'"):
        find_app("h9_missing:io")
    with pytest.raises(AppLoadError, match="no such file: missing.py"):
        find_app("missing.py:io")
