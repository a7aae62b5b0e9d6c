"""Log helpers shared by every layer (a bottom module: no siopg imports).

Anything a client sent (names, URLs, error texts built from input) goes into a log line
through :func:`clip`, so one request cannot write a megabyte-long line at ERROR.
"""

from __future__ import annotations

__all__ = ["clip"]


def clip(value: object, limit: int = 200) -> str:
    """`value` as text, cut to `limit` characters with an ellipsis and the full length."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} chars)"
