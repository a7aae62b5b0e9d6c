"""Log helpers shared by every layer (a bottom module: no siopg imports).

Anything a client sent (names, URLs, error texts built from input) goes into a log line
through :func:`clip`, so one request cannot write a megabyte-long line at ERROR.
"""

from __future__ import annotations

import logging
import os
from typing import Any


def clip(value: object, limit: int = 200) -> str:
    """`value` as text, at most `limit` characters (plus a note of how much was cut), with
    control characters escaped, so a 700 kB name or a forged newline cannot flood or forge logs."""
    text = value if isinstance(value, str) else str(value)
    extra = len(text) - limit
    if extra > 0:
        text = text[:limit]
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text + f"...(+{extra} chars)" if extra > 0 else text


recovery_log = logging.getLogger("siopg.recovery")
# SIOPG_LOG_RECOVERY=1: the reason a restore found no session is logged at INFO (else DEBUG)
_WHY_LEVEL = logging.INFO if os.environ.get("SIOPG_LOG_RECOVERY") == "1" else logging.DEBUG


def no_session(pid: Any, reason: str, *args: Any) -> None:
    """Log (cheaply, at DEBUG unless SIOPG_LOG_RECOVERY=1) why a CONNECT presenting `pid`
    gets no session back; only a clipped prefix of the pid (the session's secret) is shown."""
    if recovery_log.isEnabledFor(_WHY_LEVEL):
        prefix = pid[:6] if isinstance(pid, str) else type(pid).__name__
        recovery_log.log(_WHY_LEVEL, "no session for pid %s...: " + reason, prefix, *args)
