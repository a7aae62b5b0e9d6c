"""Just enough HTTP/1.x to route a connection: find the request head, read its target.

Sans-I/O: `parse_head(buffer)` is fed everything read so far and answers "need more", the
parsed head, or raises `HeadError` with the status to answer. The worker's aiohttp parses the
request again for real; the supervisor only needs the method, the path and the `sid` query
parameter, and must refuse garbage without ever buffering more than `max_size` bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import unquote

from siopg.errors import SiopgError

_END = b"\r\n\r\n"
# aiohttp's per-line limits in the worker (max_line_size, max_field_size): a longer line that
# got past the supervisor would make the worker log a traceback per request. Refuse it here.
MAX_LINE = 8190
_REQUEST_LINE = re.compile(rb"([A-Z_-]{1,20}) ([\x21-\x7e]+) HTTP/1\.[01]")
_METHOD_PREFIX = re.compile(rb"[A-Z_-]{0,20}(?: |$)")


class HeadError(SiopgError):
    """The bytes received cannot be an HTTP/1.x request head."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(slots=True, frozen=True)
class RequestHead:
    method: str
    path: str
    query: str
    sid: str | None
    head_size: int  # bytes up to and including the blank line


def parse_head(buf: bytes | bytearray, max_size: int = 16384) -> RequestHead | None:
    """Parse the request head at the start of `buf`; None while it is incomplete."""
    start = 0
    # RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line.
    while buf.startswith(b"\r\n", start) and start < 8:
        start += 2
    line_end = buf.find(b"\r\n", start)
    if line_end < 0:
        # Validate what we have of the request line early, so garbage is refused at once.
        _check_partial_request_line(bytes(buf[start : start + 64]))
        if len(buf) >= max_size:
            raise HeadError(431, "Request Header Fields Too Large")
        return None
    method, target = _parse_request_line(bytes(buf[start:line_end]))
    end = buf.find(_END, line_end)
    if end < 0:
        if len(buf) >= max_size:
            raise HeadError(431, "Request Header Fields Too Large")
        return None
    if end + 4 > max_size:
        raise HeadError(431, "Request Header Fields Too Large")
    if line_end - start > MAX_LINE:
        raise HeadError(414, "URI Too Long")
    if end - line_end > MAX_LINE and max(map(len, bytes(buf[line_end:end]).split(b"\r\n"))) > MAX_LINE:
        raise HeadError(431, "Request Header Fields Too Large")
    path, _, query = target.partition("?")
    return RequestHead(method, path, query, _query_param(query, "sid"), end + 4)


def _check_partial_request_line(prefix: bytes) -> None:
    if prefix and not _METHOD_PREFIX.match(prefix):
        raise HeadError(400, "Bad Request")


def _parse_request_line(line: bytes) -> tuple[str, str]:
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        if (
            line.count(b" ") == 2
            and line.rsplit(b" ", 1)[1].startswith(b"HTTP/")
            and _REQUEST_LINE.fullmatch(line.rsplit(b" ", 1)[0] + b" HTTP/1.1")
        ):
            raise HeadError(505, "HTTP Version Not Supported")
        raise HeadError(400, "Bad Request")
    return m.group(1).decode("ascii"), m.group(2).decode("ascii")


def _query_param(query: str, name: str) -> str | None:
    if not query:
        return None
    key = name + "="
    for part in query.split("&"):
        if part.startswith(key):
            return unquote(part[len(key) :])
    return None


def response(status: int, reason: str, body: bytes = b"", content_type: str = "text/plain") -> bytes:
    """A complete `Connection: close` HTTP/1.1 response."""
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def error_response(err: HeadError) -> bytes:
    return response(err.status, err.reason, f"{err.reason}\n".encode())


UNKNOWN_SID = response(
    400,
    "Bad Request",
    json.dumps({"code": 1, "message": "Session ID unknown"}, separators=(",", ":")).encode(),
    "application/json",
)
SERVICE_UNAVAILABLE = response(503, "Service Unavailable", b"no worker available\n")
