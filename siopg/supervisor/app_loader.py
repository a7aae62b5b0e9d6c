"""Resolve `module:attr` or `path/to/file.py:attr`: kept importable here, lives in siopg.runtime.

`siopg serve` (one process) and the supervisor's workers share one loader, so a reference
means the same thing with or without `--workers`.
"""

from __future__ import annotations

from siopg.runtime import AppLoadError, load_app

__all__ = ["AppLoadError", "load_app"]
