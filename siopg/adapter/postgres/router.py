"""The log router: hands each row the log reader (listener.py) fetches to its namespace adapter.

Rows of namespaces this process does not serve, and responses addressed to another server,
are skipped before decoding; an undecodable row (written by hand or by a newer version) is
logged and skipped, never fatal to the reader.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from siopg._log import clip
from siopg.adapter.cluster import ClusterMessage
from siopg.adapter.postgres import codec

log = logging.getLogger("siopg.adapter.postgres")


class MessageSink(Protocol):
    """What a row is routed to (a namespace adapter)."""

    def on_message(self, message: ClusterMessage, offset: str | None = None) -> None: ...


class LogRouter:
    """Namespace name -> adapter; `on_row` is the LogListener's row callback."""

    def __init__(self, uid: str, adapters: Mapping[str, MessageSink]) -> None:
        self.uid = uid
        self.adapters = adapters  # the cluster's namespace -> adapter map (shared, not copied)

    def on_row(self, row: Any) -> None:
        adapter = self.adapters.get(row["nsp"])
        if adapter is None:
            return
        target = row["target"]
        if target is not None and target != self.uid:
            return
        try:
            message = codec.decode(row)
        except Exception as exc:  # noqa: BLE001 - a row written by hand or by a newer version
            log.warning("ignored undecodable packet row %s: %s", row["id"], clip(exc))
            return
        adapter.on_message(message, str(row["id"]))
