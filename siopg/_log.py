"""Log helpers shared by every layer (a bottom module: no siopg imports).

Anything a client sent (names, URLs, error texts built from input) goes into a log line
through :func:`clip`, so one request cannot write a megabyte-long line at ERROR.
"""

from __future__ import annotations


def clip(value: object, limit: int = 200) -> str:
    """`value` as text, at most `limit` characters (plus a note of how much was cut), with
    control characters escaped, so a 700 kB name or a forged newline cannot flood or forge logs."""
    text = value if isinstance(value, str) else str(value)
    extra = len(text) - limit
    if extra > 0:
        text = text[:limit]
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text + f"...(+{extra} chars)" if extra > 0 else text
