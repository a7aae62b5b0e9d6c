"""The supervisor <-> worker channel: a SOCK_SEQPACKET Unix socket pair.

Supervisor -> worker: `b"C" + bytes already read` with the accepted connection's fd attached
(SCM_RIGHTS), one message per connection; the worker owns the fd from then on.
Supervisor -> worker: `b"M" + request id`: send your Prometheus metrics.
Worker -> supervisor: `b"R"` (ready to serve), `b"L" + ascii int` (open connections, for
least-connections balancing), `b"m" + request id + b"\n" + metrics text`.
SEQPACKET keeps message boundaries, so no framing is needed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("siopg.supervisor")

CONN = b"C"
READY = b"R"
LOAD = b"L"
METRICS_REQUEST = b"M"
METRICS_REPLY = b"m"
MAX_PREBUFFER = 65536           # bytes read before routing that travel with the fd
MAX_MESSAGE = MAX_PREBUFFER + 16
MAX_REPLY = 1 << 20
MAX_QUEUED = 4096


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(supervisor end, worker end); the worker end is inheritable by the child process."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (parent, child):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    parent.setblocking(False)
    child.set_inheritable(True)
    return parent, child


class SupervisorEnd:
    """Sends connections to one worker without blocking; queues (bounded) when it is busy."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_message: Callable[[bytes], None],
        on_closed: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._on_message = on_message
        self._on_closed = on_closed
        self._queue: collections.deque[tuple[bytes, socket.socket]] = collections.deque()
        self._writing = False
        self.closed = False
        loop.add_reader(sock.fileno(), self._read)

    def send_connection(self, prebuffered: bytes, conn: socket.socket) -> bool:
        """Hand `conn` over; the caller must not use it afterwards. False if refused."""
        if self.closed or len(self._queue) >= MAX_QUEUED:
            return False
        if not self._queue:
            try:
                socket.send_fds(self._sock, [CONN + prebuffered], [conn.fileno()])
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return False
            else:
                conn.close()
                return True
        self._queue.append((prebuffered, conn))
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._sock.fileno(), self._flush)
        return True

    def _flush(self) -> None:
        while self._queue:
            data, conn = self._queue[0]
            try:
                socket.send_fds(self._sock, [CONN + data], [conn.fileno()])
            except BlockingIOError:
                return
            except OSError:
                self.close()
                return
            self._queue.popleft()
            conn.close()
        self._loop.remove_writer(self._sock.fileno())
        self._writing = False

    def send_control(self, msg: bytes) -> bool:
        """A small control message (no fd); False if the channel is full or closed."""
        if self.closed:
            return False
        try:
            self._sock.send(msg)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.close()
            return False
        return True

    def _read(self) -> None:
        while True:
            try:
                msg = self._sock.recv(MAX_REPLY)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg:
                self.close()
                return
            self._on_message(msg)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        fd = self._sock.fileno()
        if fd >= 0:
            self._loop.remove_reader(fd)
            if self._writing:
                self._loop.remove_writer(fd)
        self._sock.close()
        while self._queue:
            _, conn = self._queue.popleft()
            conn.close()
        self._on_closed()


def recv_messages(sock: socket.socket) -> list[tuple[bytes, int | None]] | None:
    """Worker side: every message now available; None at EOF.

    Each is `(b"C" + prebuffered bytes, fd)` for a connection or `(control message, None)`.
    """
    out: list[tuple[bytes, int | None]] = []
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 4)
        except BlockingIOError:
            return out
        except InterruptedError:
            continue
        if not msg and not fds:
            return None if not out else out
        if msg[:1] == CONN and len(fds) == 1:
            out.append((msg, fds[0]))
        elif msg[:1] != CONN and not fds:
            out.append((msg, None))
        else:  # unexpected: never leak a descriptor
            for fd in fds:
                try:
                    socket.close(fd)
                except OSError:
                    pass
            log.warning("worker channel: unexpected message %r", msg[:16])
