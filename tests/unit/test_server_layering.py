"""The server layer's source rules (issue 8), checked on the source text:

- siopg.metrics and siopg.dashboard plug into the server through siopg.server.extensions (the
  import direction itself is checked for the whole package by test_layers.py);
- no fire-and-forget task in siopg/server, siopg/dashboard, siopg/metrics.py (asyncio keeps
  tasks weakly: every ensure_future/create_task result is kept, normally by the TaskSet);
- no attribute hung on a function object (pending acks are PendingAck objects).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "siopg"
SERVER = sorted((ROOT / "server").glob("*.py"))
ABOVE_SERVER = ("siopg.metrics", "siopg.dashboard", "siopg.emitter", "siopg.supervisor", "siopg.cli", "siopg.__main__")


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))






def test_metrics_and_dashboard_still_plug_in() -> None:
    """Through the registration hooks: io.metrics_registry, /metrics, and a dashboard loaded
    only when asked for (a fresh interpreter, so nothing else loaded it before)."""
    code = (
        "import sys\n"
        "import siopg\n"
        "io = siopg.Server()\n"
        "assert io.metrics_registry is io.metrics_registry\n"
        "app = io.aiohttp_app(metrics=True)\n"
        "paths = {r.resource.canonical for r in app.router.routes()}\n"
        "assert '/metrics' in paths and '/dashboard' not in paths, paths\n"
        "assert 'siopg.dashboard' not in sys.modules\n"
        "app = io.aiohttp_app(dashboard=True)\n"
        "assert '/dashboard' in {r.resource.canonical for r in app.router.routes()}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)


FIRE_AND_FORGET_SCOPE = [*SERVER, *sorted((ROOT / "dashboard").glob("*.py")), ROOT / "metrics.py"]


@pytest.mark.parametrize("path", FIRE_AND_FORGET_SCOPE, ids=lambda p: p.parent.name + "/" + p.name)
def test_no_fire_and_forget_tasks(path: Path) -> None:
    if path.name == "tasks.py":
        return  # the TaskSet itself: it adds every task to its set
    tree = _tree(path)
    kept: set[int] = set()  # stored in an attribute (self._ready = ...) or awaited at once
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Attribute) for t in node.targets):
            kept.add(id(node.value))
        elif isinstance(node, ast.Await):
            kept.add(id(node.value))
    bad = [
        f"line {node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("ensure_future", "create_task")
        and id(node) not in kept
    ]
    assert bad == [], "a task whose reference nobody keeps (use the server's TaskSet)"


@pytest.mark.parametrize("path", SERVER, ids=lambda p: p.name)
def test_no_attributes_on_function_objects(path: Path) -> None:
    bad = []
    for func in ast.walk(_tree(path)):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        local_defs = {
            node.name for node in ast.walk(func)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node is not func
        }
        for node in ast.walk(func):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in local_defs
                ):
                    bad.append(f"line {node.lineno}: {target.value.id}.{target.attr}")
    assert bad == []
