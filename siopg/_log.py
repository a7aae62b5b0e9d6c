"""Logging helpers shared by every layer (bottom module: imports nothing of siopg)."""

from __future__ import annotations


def clip(value: object, limit: int = 200) -> str:
    """`repr(value)` cut to `limit` characters, for log lines that include client input.

    A client may send names of hundreds of kilobytes; logging them whole makes log lines of
    that size (and lets one client flood the logs). The full length is noted when cut.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} chars)"
