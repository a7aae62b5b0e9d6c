"""Dependencies point down only: every import in the siopg package, checked against its layers.

The package is read with `ast` (nothing is imported), so an import cycle cannot hide in a
function body: every `import` / `from ... import` counts wherever it is written (module level,
function bodies, `if TYPE_CHECKING:` blocks), relative forms (`from . import x`,
`from ..errors import E`) included, and so do `importlib.import_module("siopg...")` calls
with a constant name.

Imports under `if TYPE_CHECKING:` are checked like the others (decision for issue 8): none goes
up the layers today, and a lower layer that needs to name an upper layer's type should say
what it uses with a Protocol of its own (as `siopg.adapter.base.NamespaceLike` does) rather
than pull the upper layer into its type graph. The failure message says when an import is
under TYPE_CHECKING, should that rule ever need relaxing.

Imports within one layer are allowed (a package's modules use each other). `siopg/__init__.py`
re-exports the public API and may import anything; importing the bare package `siopg` runs
it, so that counts as importing the server layer (what it loads eagerly).

Every module must belong to a layer: a new top-level module or package fails the test until
it is placed in LAYERS below (the order is the one docs/architecture.md draws).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "siopg"

# Bottom to top. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("bottom", ("siopg._histogram", "siopg._log", "siopg._tasks", "siopg.names", "siopg.errors", "siopg.runtime")),
    ("parser / engine core", ("siopg.parser", "siopg.engine")),
    # The engine's framework bindings build on the core; the core never imports them
    # (engine.io's BaseServer / Server / uServer split).
    ("engine bindings", ("siopg.engine.aiohttp_binding", "siopg.engine.asgi")),
    ("adapter", ("siopg.adapter",)),
    ("server", ("siopg.server",)),
    ("metrics / dashboard / emitter", ("siopg.metrics", "siopg.dashboard", "siopg.emitter")),
    ("supervisor", ("siopg.supervisor",)),
    ("cli", ("siopg.cli", "siopg.__main__")),
]
ROOT_PACKAGE_LAYER = "server"  # `import siopg` runs siopg/__init__.py, which imports the server

# Third-party web frameworks: only the engine bindings (and layers above the engine) use them.
FRAMEWORKS = ("aiohttp", "starlette", "uvicorn", "multidict", "yarl")
FRAMEWORK_FREE_LAYERS = ("bottom", "parser / engine core")

RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (absolute name)
    line: int
    in_function: bool
    type_checking: bool

    def where(self) -> str:
        notes = [n for n, on in (("in a function", self.in_function), ("under TYPE_CHECKING", self.type_checking)) if on]
        return f"{self.source}:{self.line}" + (f" ({', '.join(notes)})" if notes else "")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_files() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def layer_of(module: str) -> str | None:
    """The layer `module` belongs to (None: no layer claims it)."""
    if module == "siopg":
        return ROOT_PACKAGE_LAYER
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name)
    return best[1] if best else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    """Every import a module's source contains, wherever it is written."""

    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.imports: list[Import] = []
        self._function = 0
        self._type_checking = 0

    def _add(self, target: str, node: ast.AST) -> None:
        self.imports.append(
            Import(self.module, target, getattr(node, "lineno", 0), self._function > 0, self._type_checking > 0)
        )

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function += 1
        self.generic_visit(node)
        self._function -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._type_checking += 1
            for child in node.body:
                self.visit(child)
            self._type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            if node.level > 1:
                parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(sub if sub in self.known else base, node)  # `from pkg import submodule`

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self._add(arg.value, node)
        self.generic_visit(node)


def all_imports() -> list[Import]:
    files = package_files()
    known = set(files)
    found: list[Import] = []
    for module, path in files.items():
        collector = _Collector(module, path.name == "__init__.py", known)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found.extend(collector.imports)
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in package_files() if m != "siopg" and layer_of(m) is None)
    assert not unplaced, "modules no layer claims (add them to LAYERS in this test):\n  " + "\n  ".join(unplaced)


def test_imports_point_down() -> None:
    """No module imports a module of a higher layer (all violations listed at once)."""
    violations: set[str] = set()  # one line per import statement, however many names it takes
    for imp in all_imports():
        if imp.source == "siopg" or not (imp.target == "siopg" or imp.target.startswith("siopg.")):
            continue
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src is None:
            continue  # reported by test_every_module_has_a_layer
        if dst is None:
            violations.add(f"{imp.where()}: imports {imp.target}, which no layer claims")
        elif RANK[dst] > RANK[src]:
            violations.add(f"{imp.where()}: {src} imports {imp.target} ({dst}, a higher layer)")
    assert not violations, f"{len(violations)} import(s) going up the layers:\n  " + "\n  ".join(sorted(violations))


def test_core_imports_no_web_framework() -> None:
    """The sans-I/O core (bottom, parser, engine core) never imports aiohttp & co.: only the
    engine bindings do. A new binding module that imports a framework must be listed in
    LAYERS' "engine bindings"."""
    violations = {
        f"{imp.where()}: {layer_of(imp.source)} imports {imp.target}"
        for imp in all_imports()
        if imp.target.split(".")[0] in FRAMEWORKS and layer_of(imp.source) in FRAMEWORK_FREE_LAYERS
    }
    assert not violations, "web framework imports in the framework-free core:\n  " + "\n  ".join(sorted(violations))


# Imports allowed by the layer order but still wrong: which package must not know which.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # The user-facing Server knows adapters only through their interface (its default is the
    # in-memory one); a launcher that wants Postgres passes a factory (set_adapter_factory).
    "siopg.server": ("siopg.adapter.postgres",),
}


def test_forbidden_imports() -> None:
    violations = {
        f"{imp.where()}: imports {imp.target}"
        for imp in all_imports()
        for src, banned in FORBIDDEN.items()
        if (imp.source == src or imp.source.startswith(src + "."))
        and any(imp.target == b or imp.target.startswith(b + ".") for b in banned)
    }
    assert not violations, "forbidden imports:\n  " + "\n  ".join(sorted(violations))


# -- the checker itself ---------------------------------------------------------------------
def _collect(source: str, module: str = "siopg.engine.session", is_package: bool = False) -> list[Import]:
    known = {"siopg.engine", "siopg.engine.server", "siopg.engine.asgi", "siopg.errors", "siopg.server",
             "siopg.server.socket"}
    collector = _Collector(module, is_package, known)
    collector.visit(ast.parse(source))
    return collector.imports


def test_collector_sees_every_form() -> None:
    source = (
        "import siopg.server.socket\n"
        "from ..errors import SiopgError\n"
        "from . import asgi\n"
        "from .server import EngineServer\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from siopg.server import Server\n"
        "def f():\n"
        "    from siopg.server.socket import Socket\n"
        "    import importlib\n"
        "    importlib.import_module('siopg.server')\n"
        "async def g():\n"
        "    from siopg import server\n"
    )
    got = [(i.target, i.in_function, i.type_checking) for i in _collect(source)]
    assert got == [
        ("siopg.server.socket", False, False),
        ("siopg.errors", False, False),
        ("siopg.engine.asgi", False, False),
        ("siopg.engine.server", False, False),
        ("typing", False, False),
        ("siopg.server", False, True),
        ("siopg.server.socket", True, False),
        ("importlib", True, False),
        ("siopg.server", True, False),
        ("siopg.server", True, False),
    ]


def test_relative_imports_from_a_package_init() -> None:
    got = [i.target for i in _collect("from .server import X\nfrom .. import errors\n", "siopg.engine", True)]
    assert got == ["siopg.engine.server", "siopg.errors"]


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("siopg.errors", "bottom"),
        ("siopg.engine.server", "parser / engine core"),
        ("siopg.engine.asgi", "engine bindings"),
        ("siopg.adapter.postgres.adapter", "adapter"),
        ("siopg.emitter", "metrics / dashboard / emitter"),
        ("siopg", "server"),
        ("siopg.cli", "cli"),
        ("siopg.nowhere", None),
    ],
)
def test_layer_of(module: str, layer: str | None) -> None:
    assert layer_of(module) == layer
