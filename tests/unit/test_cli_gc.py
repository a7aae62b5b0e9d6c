"""`siopg serve --gc-threshold`: parsing, and what applying it does to the process's GC."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from siopg.cli import DEFAULT_GC_THRESHOLD, parse_gc_setting


def test_parse_values() -> None:
    assert parse_gc_setting("off") is None
    assert parse_gc_setting(" OFF ") is None
    assert parse_gc_setting("5000") == (5000,)
    assert parse_gc_setting("5000,20,30") == (5000, 20, 30)
    assert parse_gc_setting(None) == (int(DEFAULT_GC_THRESHOLD),)


@pytest.mark.parametrize("bad", ["abc", "0", "-5", "1,2,3,4", "1.5"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_gc_setting(bad)


def test_importing_siopg_leaves_gc_alone() -> None:
    """The library never tunes the GC of a process that embeds it; only the CLI does."""
    code = "import gc; before = gc.get_threshold(); import siopg, siopg.cli; print(before == gc.get_threshold())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def _applied(value: str) -> list[str]:
    code = textwrap.dedent(f"""
        import gc
        from siopg.cli import apply_gc_setting
        default = gc.get_threshold()
        print(apply_gc_setting({value!r}))
        print(gc.get_threshold() == default, gc.get_freeze_count() > 0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split("\n")


def test_apply_sets_threshold_and_freezes() -> None:
    applied, state = _applied("12345")[:2]
    assert applied.startswith("(12345, ")
    assert state == "False True"


def test_apply_off_changes_nothing() -> None:
    applied, state = _applied("off")[:2]
    assert applied == "None"
    assert state == "True False"


def test_cli_rejects_bad_value() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "siopg", "serve", "app:io", "--gc-threshold", "lots"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "--gc-threshold" in proc.stderr
