"""The tools the code assumes, run as tests (asyncpg's tests/test__sourcecode.py is the model).

`ruff check siopg` and `mypy` (configured in pyproject.toml: --strict flags on siopg.engine and
siopg.parser, check_untyped_defs elsewhere) run as subprocesses of this interpreter, so the
venv's versions answer. A test fails with the tool's output; it is skipped only when the
tool is not installed (`pip install -e '.[test]'` installs both).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # seconds; both take a few seconds on a warm cache

# Files another branch of issue 8 is rewriting; their remaining ruff findings are fixed when it
# is merged, and this list then goes (it must end empty).


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed (pip install -e '.[test]')")
    return subprocess.run(
        [sys.executable, "-m", tool, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_ruff() -> None:
    proc = _run("ruff", "check", "--no-cache", "--output-format", "concise", "siopg")
    assert proc.returncode == 0, f"ruff found problems:\n{proc.stdout}{proc.stderr}"


def test_mypy(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The project's .mypy_cache (git-ignored) makes reruns fast; a read-only checkout uses a temp one.
    cache = ROOT / ".mypy_cache"
    if not os.access(ROOT, os.W_OK):
        cache = tmp_path_factory.mktemp("mypy_cache")
    proc = _run("mypy", "--cache-dir", str(cache))
    assert proc.returncode == 0, f"mypy found problems:\n{proc.stdout}{proc.stderr}"
