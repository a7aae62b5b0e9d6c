"""docs/reference.md stays true: its command-line part is what the parsers say (regenerate it
with `python docs/reference_cli.py`), and every option of Server, Recovery and
PostgresAdapter, and every SIOPG_* variable siopg reads, is in it (and nothing that is gone)."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
from pathlib import Path

import siopg

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("reference_cli", ROOT / "docs" / "reference_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(title: str) -> str:
    text = REFERENCE.read_text()
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start:end if end != -1 else None]


def _table_options(section: str) -> set[str]:
    return set(re.findall(r"^\| `(\w+)` \|", section, re.M))


def test_the_command_line_part_is_generated_from_the_parsers() -> None:
    generator = _generator()
    assert generator.current_block(REFERENCE.read_text()) == generator.render(), (
        "docs/reference.md is stale: run `python docs/reference_cli.py`")
    block = generator.render()
    for name, parser in generator.parsers().items():
        for action in parser._actions:
            for option in action.option_strings:
                assert f"`{option}" in block or option in ("-h", "--help"), (name, option)


def test_every_option_of_the_api_is_listed_with_its_default() -> None:
    expected = {
        "## `siopg.Server(...)`": set(inspect.signature(siopg.Server).parameters),
        "## `siopg.Recovery(...)`": {f.name for f in dataclasses.fields(siopg.Recovery)},
        "## `siopg.PostgresAdapter(dsn, ...)`": set(inspect.signature(siopg.PostgresAdapter).parameters) - {"dsn"},
    }
    for title, options in expected.items():
        assert _table_options(_section(title)) == options, title
    server = _section("## `siopg.Server(...)`")
    for name, parameter in inspect.signature(siopg.Server).parameters.items():
        default = parameter.default
        shown = f'"{default}"' if isinstance(default, str) else repr(default)
        assert f"| `{name}` | `{shown}` |" in server, (name, shown)


def test_every_environment_variable_siopg_reads_is_listed() -> None:
    read = set()
    for path in (ROOT / "siopg").rglob("*.py"):
        read |= set(re.findall(r'"(SIOPG_[A-Z_]+)"', path.read_text()))
    text = REFERENCE.read_text()
    assert read and not {name for name in read if f"`{name}`" not in text}
