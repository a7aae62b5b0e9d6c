"""What a process that serves a siopg app needs before its event loop runs, in one place.

Used by both `siopg serve` (siopg.cli, one process) and the supervisor's workers
(siopg.supervisor.worker): resolving the app reference (:func:`load_app`), tuning the cyclic
GC once the app is imported (:func:`apply_gc_setting`), and running the main coroutine on
uvloop (:func:`run`). A bottom-layer module: it imports nothing of siopg above
`siopg.errors`, so the cli and the supervisor can share it without importing each other.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from siopg.errors import SiopgError

T = TypeVar("T")

# -- running -----------------------------------------------------------------------------


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh uvloop event loop (asyncio's on Windows, where uvloop
    does not run and is not a dependency)."""
    if sys.platform == "win32":  # pragma: no cover
        return asyncio.run(main)
    import uvloop

    return uvloop.run(main)


# -- garbage collector -------------------------------------------------------------------
GC_ENV = "SIOPG_GC_THRESHOLD"
# Gen-0 threshold `siopg serve` sets by default. Python's 700 makes the cyclic GC run every few
# connections during a ramp-up, rescanning young objects that are all alive (37-47 % of the
# server's CPU in bench/connections.py); 100000 cuts CPU per connection by ~40 % at equal RSS.
DEFAULT_GC_THRESHOLD = "100000"


def parse_gc_setting(value: str | None) -> tuple[int, ...] | None:
    """`--gc-threshold`: "off" (Python's defaults) -> None, "N" or "N,N1,N2" -> thresholds.

    Raises ValueError on anything else. Only the generations given are changed.
    """
    text = (value if value is not None else DEFAULT_GC_THRESHOLD).strip().lower()
    if text in ("off", "default", "none", ""):
        return None
    parts = text.split(",")
    if len(parts) > 3:
        raise ValueError("expected N or N,N1,N2")
    try:
        thresholds = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected 'off' or a positive integer, got {value!r}") from None
    if any(t <= 0 for t in thresholds):
        raise ValueError("thresholds must be positive")
    return thresholds


def apply_gc_setting(value: str | None) -> tuple[int, ...] | None:
    """Tune the cyclic GC of a `siopg serve` process (never done by the library itself).

    Call after importing the app: gc.freeze() moves everything alive then (modules, the app)
    out of the collector's sight for good, and the higher gen-0 threshold makes collections
    rare; cyclic garbage is still collected. Returns the thresholds set (None: untouched).
    """
    thresholds = parse_gc_setting(value)
    if thresholds is None:
        return None
    gc.collect()
    gc.freeze()
    current = gc.get_threshold()
    gc.set_threshold(*(thresholds + current[len(thresholds):]))
    return gc.get_threshold()


# -- which database ----------------------------------------------------------------------
DATABASE_ENV = "SIOPG_DATABASE_URL"


def database_url_from_env() -> str | None:
    """The database `siopg serve` and `siopg migrate` use when no `--database-url` is given.

    Only siopg's own variable: a plain `DATABASE_URL` (Django and Heroku set one) must not
    silently turn an app into a Postgres cluster or create a schema in someone's database.
    """
    return os.environ.get(DATABASE_ENV) or None


def ignored_database_url_notice(given: str | None) -> str | None:
    """The one line that says a plain DATABASE_URL was ignored (None when there is nothing to say)."""
    if given or not os.environ.get("DATABASE_URL"):
        return None
    return (f"DATABASE_URL is set but siopg ignores it; to use that database pass --database-url"
            f" \"$DATABASE_URL\" or set {DATABASE_ENV}")


def redact(dsn: str) -> str:
    """The DSN without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


# -- loading the app ---------------------------------------------------------------------
DEFAULT_ATTR = "io"


class AppLoadError(SiopgError):
    """The app reference cannot be resolved; the message says why, for the command line.

    `ref` is the reference as the user wrote it (None when the error is about what it named).
    """

    def __init__(self, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.ref = ref


def split_ref(ref: str) -> tuple[str, str]:
    """`module:attr` or `path/to/file.py:attr` -> (module or path, attr).

    The one splitting rule: the LAST colon separates the attribute (a path may hold colons,
    an attribute path never does); no colon, or nothing after it, means `io`.
    """
    module_ref, sep, attr = ref.rpartition(":")
    if not sep:
        module_ref, attr = ref, ""
    if not module_ref:
        raise AppLoadError(f"invalid app reference {ref!r}: expected module:attr or file.py:attr", ref)
    return module_ref, attr or DEFAULT_ATTR


def is_file_ref(module_ref: str) -> bool:
    """True when the module part names a file rather than an importable module."""
    return module_ref.endswith(".py") or os.sep in module_ref or "/" in module_ref


def load_app(ref: str) -> Any:
    """Import and return the object named by `ref` (see :func:`split_ref`).

    A module is imported with the current directory on sys.path; a file is executed as a
    module named after it (its directory put on sys.path, so it imports its siblings as
    `python app.py` would). Raises AppLoadError, with a message for the command line, when
    the file, the module or the attribute does not exist; errors raised by the app's own code
    while it is imported propagate unchanged.
    """
    module_ref, attr = split_ref(ref)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if is_file_ref(module_ref):
        module = _load_file(module_ref, ref)
    else:
        try:
            module = importlib.import_module(module_ref)
        except ModuleNotFoundError as exc:
            if exc.name and module_ref.startswith(exc.name):  # the module itself, not one it imports
                raise AppLoadError(f"cannot import module {module_ref!r}: {exc}", ref) from exc
            raise
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"{module_ref} has no attribute {attr!r}", ref) from None
    return obj


def find_app(ref: str) -> None:
    """Raise AppLoadError when `ref` names a file or a top-level module that does not exist.

    Nothing is imported (a package's __init__ is not run): the supervisor checks a reference
    this way before it starts a database and workers that could only fail to load it.
    """
    module_ref, _ = split_ref(ref)
    if is_file_ref(module_ref):
        if not Path(module_ref).is_file():
            raise AppLoadError(f"no such file: {module_ref}", ref)
        return
    top = module_ref.split(".")[0]
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if importlib.util.find_spec(top) is None:
        raise AppLoadError(f"cannot import module {module_ref!r}: No module named {top!r}", ref)


def _load_file(module_ref: str, ref: str) -> Any:
    path = Path(module_ref)
    if not path.is_file():
        raise AppLoadError(f"no such file: {module_ref}", ref)
    path = path.resolve()
    # Registered under its own name, so the app's modules that `import app` get this very
    # module (not a second copy with a second Server); a prefixed name if that one is taken.
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None:
        existing_file = getattr(existing, "__file__", None)
        if existing_file and Path(existing_file).resolve() == path:
            return existing
        name = f"siopg_app_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {module_ref}", ref)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)  # as importlib does: no half-initialised module left behind
        raise
    return module


__all__ = [
    "DATABASE_ENV",
    "DEFAULT_GC_THRESHOLD",
    "GC_ENV",
    "AppLoadError",
    "apply_gc_setting",
    "database_url_from_env",
    "find_app",
    "ignored_database_url_notice",
    "load_app",
    "parse_gc_setting",
    "redact",
    "run",
    "split_ref",
]
