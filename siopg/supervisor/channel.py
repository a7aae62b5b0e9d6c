"""The supervisor <-> worker channel: a SOCK_SEQPACKET Unix socket pair.

Supervisor -> worker: `b"C" + bytes already read` with the accepted connection's fd attached
(SCM_RIGHTS), one message per connection; the worker owns the fd from then on.
Supervisor -> worker: `b"M" + request id`: send your Prometheus metrics.
Worker -> supervisor: `b"R"` (ready to serve), `b"W"` (started, but waiting for its database:
not ready), `b"L" + ascii int` (open connections, for least-connections balancing), and the
metrics text in chunks of at most CHUNK bytes: `b"n" + request id + b"\n" + chunk` for every
chunk but the last, `b"m" + request id + b"\n" + chunk` for the last one.
SEQPACKET keeps message boundaries, so no framing is needed; a datagram is limited by the
socket buffer (a larger one fails with EMSGSIZE), hence the chunks, sent in order by `Outbox`.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("siopg.supervisor")

CONN = b"C"
READY = b"R"
LOAD = b"L"
METRICS_REQUEST = b"M"
METRICS_REPLY = b"m"
METRICS_MORE = b"n"             # a metrics chunk that is not the last one
WAITING = b"W"
CHUNK = 60 * 1024               # well below any socket buffer: never EMSGSIZE
MAX_OUTBOX = 64 << 20           # bytes a worker queues for a supervisor that does not read
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


def chunks(kind_more: bytes, kind_last: bytes, prefix: bytes, data: bytes) -> list[bytes]:
    """`data` cut into channel messages: `kind_more + prefix + chunk`..., `kind_last + prefix + chunk`."""
    step = CHUNK
    parts = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    return [(kind_last if i == len(parts) - 1 else kind_more) + prefix + part for i, part in enumerate(parts)]


# errors that mean the other end is gone (anything else is about one message, not the channel)
GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF, errno.ECONNREFUSED})


class Outbox:
    """Worker side: sends control messages in order without blocking the loop.

    Messages that do not fit the socket buffer now wait (up to MAX_OUTBOX bytes) for it to
    drain. A message the kernel refuses (EMSGSIZE, ...) is dropped with a warning: one reply
    never ends a worker. `on_gone` is called once if the supervisor end is closed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, on_gone: Callable[[], None]) -> None:
        self._loop = loop
        self._sock = sock
        self._on_gone = on_gone
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._writing = False
        self.closed = False
        self.dropped = 0

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    def send(self, messages: list[bytes], advisory: bool = False) -> bool:
        """Queue `messages` (sent in order, all or none); False if dropped.

        `advisory` messages (load reports) are dropped rather than queued behind others.
        """
        if self.closed or (advisory and self._queue):
            return False
        size = sum(len(m) for m in messages)
        if self._queued + size > MAX_OUTBOX:
            self.dropped += 1
            log.warning("worker channel: %d bytes already queued for the supervisor; dropping a"
                        " %d-byte reply", self._queued, size)
            return False
        self._queue.extend(messages)
        self._queued += size
        self._flush()
        if self._queue and not self._writing and not self.closed:
            self._writing = True
            self._loop.add_writer(self._sock.fileno(), self._flush)
        return True

    def _flush(self) -> None:
        while self._queue:
            msg = self._queue[0]
            try:
                self._sock.send(msg)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in GONE:
                    self.close()
                    self._on_gone()
                    return
                self.dropped += 1
                log.warning("worker channel: dropping a %d-byte message: %s", len(msg), exc)
            self._queue.popleft()
            self._queued -= len(msg)
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
            self._writing = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._writing and self._sock.fileno() >= 0:
            self._loop.remove_writer(self._sock.fileno())
        self._writing = False
        self._queue.clear()
        self._queued = 0


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
            return out if out else None
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
