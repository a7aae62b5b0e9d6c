"""Resolve `module:attr` or `path/to/file.py:attr` to the object the user wants served."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any


class AppLoadError(Exception):
    """The app reference cannot be resolved (message says why, for the command line)."""


def load_app(ref: str) -> Any:
    """Import the object named by `ref` ("module:attr", "file.py:attr"; attr defaults to io)."""
    module_ref, sep, attr = ref.rpartition(":")
    if not sep:
        module_ref, attr = ref, "io"
    if not module_ref:
        raise AppLoadError(f"invalid app reference {ref!r}: expected module:attr or file.py:attr")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if module_ref.endswith(".py") or os.sep in module_ref:
        module = _load_file(Path(module_ref))
    else:
        try:
            module = importlib.import_module(module_ref)
        except ModuleNotFoundError as exc:
            if exc.name and module_ref.startswith(exc.name):
                raise AppLoadError(f"cannot import module {module_ref!r}: {exc}") from exc
            raise
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"{module_ref!r} has no attribute {attr!r}") from None
    return obj


def _load_file(path: Path) -> Any:
    if not path.is_file():
        raise AppLoadError(f"no such file: {path}")
    path = path.resolve()
    name = f"siopg_app_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot load {path}")
    # let the app import its sibling modules, like `python app.py` would
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
