"""Every public module imports on its own, in a fresh interpreter.

An import cycle only shows when the import starts at the right module: `import siopg` may
work while `from siopg.emitter import Emitter` (what a Django or Celery process writes) fails
with "partially initialized module". So each module is imported first thing in a new
process, with nothing of siopg loaded before it. Public modules: every siopg/**/*.py whose
name does not start with `_`, plus every package (its __init__).

To keep this at a few seconds on a small machine, one fresh interpreter imports the
third-party libraries (aiohttp, asyncpg...) and then forks one child per module: each child's
sys.modules holds nothing of siopg when its import starts, which is what matters for a cycle
between siopg's own modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "siopg"


def public_modules() -> list[str]:
    names = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        elif parts[-1].startswith("_"):
            continue
        if any(p.startswith("_") for p in parts[1:]):
            continue  # inside a private package
        names.add(".".join(parts))
    names.add("siopg.emitter")  # the one the issue reported: listed even if it ever moves into a package
    return sorted(names)


# Third-party modules the driver loads before forking, so each child pays only for siopg's
# own modules (interpreter start-up plus aiohttp in 65 processes took ~20 s on 2 busy cores).
# Nothing of siopg is loaded then: each child starts with a siopg-free sys.modules.
PRELOAD = ("asyncio", "aiohttp", "aiohttp.web", "asyncpg", "msgpack", "prometheus_client", "uvloop", "json")

# Runs in one fresh interpreter: preload, then fork one child per statement (a few at a time);
# each child runs its statement as the first siopg import of its life and reports how it went.
DRIVER = r"""
import importlib, json, os, sys, traceback
statements = json.loads(sys.argv[1])
for name in json.loads(sys.argv[2]):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
loaded = sorted(m for m in sys.modules if m == "siopg" or m.startswith("siopg."))
if loaded:
    sys.exit(f"siopg modules loaded before forking: {loaded}")
results, running, todo = {}, {}, list(enumerate(statements))
limit = max(2, os.cpu_count() or 2)
while todo or running:
    while todo and len(running) < limit:
        index, stmt = todo.pop(0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code, message = 0, b""
            try:
                exec(compile(stmt, "<import test>", "exec"), {"__name__": "__import_test__"})
            except BaseException:
                code, message = 1, traceback.format_exc()[-3000:].encode()
            os.write(w, message)
            os._exit(code)
        os.close(w)
        running[pid] = (index, stmt, r)
    pid, status = os.wait()
    index, stmt, r = running.pop(pid)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    results[index] = (stmt, os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace"))
print(json.dumps([results[i] for i in range(len(statements))]))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run_all(statements: list[str], tmp: Path) -> list[str]:
    """Run each statement first thing in a fresh siopg-free process; the failures, explained."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(statements), json.dumps(PRELOAD)],
        cwd=tmp, env=_env(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, f"the import driver failed: {proc.stderr[-3000:]}"
    results = json.loads(proc.stdout)
    assert [r[0] for r in results] == statements
    return [f"{stmt}: exit {code}: {err.strip().splitlines()[-1] if err.strip() else ''}"
            for stmt, code, err in results if code != 0]


def test_public_modules_are_listed() -> None:
    modules = public_modules()
    assert {"siopg", "siopg.emitter", "siopg.server.server", "siopg.adapter.postgres"} <= set(modules)
    assert not any(part.startswith("_") for m in modules for part in m.split(".")[1:])


def test_every_public_module_imports_alone(tmp_path: Path) -> None:
    """`import siopg.x.y` as the first statement of a new interpreter works, for every module."""
    failures = _run_all([f"import {m}" for m in public_modules()], tmp_path)
    assert not failures, f"{len(failures)} module(s) cannot be imported alone:\n  " + "\n  ".join(failures)


def test_public_names_import_alone(tmp_path: Path) -> None:
    """The imports users write, each first in a fresh interpreter (issue 8's report first)."""
    statements = [
        "from siopg.emitter import Emitter",
        "from siopg.adapter.postgres import PostgresAdapter, EmitNotConfirmed",
        "from siopg.errors import SiopgError",
        "from siopg import Server, SiopgError, Emitter, PostgresAdapter",
        "from siopg.runtime import load_app, run",
    ]
    failures = _run_all(statements, tmp_path)
    assert not failures, "\n  ".join(["cannot be imported alone:", *failures])
