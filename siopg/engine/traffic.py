"""Bytes an EngineServer read and wrote, over all its connections (read by siopg.metrics).

Bumped once per read or write where bodies and frames cross the binding (one add each, never
per recipient): polling request and response bodies (after gzip), WebSocket frames as written
(header included; before per-message deflate, which aiohttp applies). Incoming WebSocket text
frames arrive decoded: they count their characters (their bytes for ASCII).
"""

from __future__ import annotations


class Traffic:
    __slots__ = ("bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
