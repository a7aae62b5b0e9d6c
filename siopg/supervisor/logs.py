"""Structured logs: every line says which process wrote it (`worker=supervisor` or its id).

Two formats: `text` (logfmt, for terminals and journald) and `json` (one object per line, for
log shippers). Workers inherit the supervisor's stderr, so their lines interleave in one stream.
"""

from __future__ import annotations

import json
import logging
import sys
import time


class _Base(logging.Formatter):
    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def _ts(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class LogfmtFormatter(_Base):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        return (
            f"ts={self._ts(record)} level={record.levelname} worker={self.worker} "
            f"logger={record.name} msg={json.dumps(msg)}"
        )


class JsonFormatter(_Base):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self._ts(record),
            "level": record.levelname,
            "worker": self.worker,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "info", fmt: str = "text", worker: str = "supervisor") -> None:
    """Configure the root logger for this process (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(worker) if fmt == "json" else LogfmtFormatter(worker))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log is per request: far too chatty above debug
    logging.getLogger("aiohttp.access").setLevel(max(logging.WARNING, root.level))
    # pgserver logs every pg_ctl command line at INFO
    logging.getLogger("pgserver").setLevel(max(logging.WARNING, root.level))
