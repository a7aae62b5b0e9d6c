"""The supervisor's front door: accept, read the request head, hand the socket to a worker.

Everything here runs as event-loop callbacks (no task per connection): with TCP_DEFER_ACCEPT
the head is usually already in the kernel buffer when `accept` returns, so the common path is
accept -> one recv -> parse -> sendmsg(fd) -> close, all in one callback. Bytes are never
relayed: once the fd is passed, the worker talks to the client directly.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from siopg.supervisor import httphead
from siopg.supervisor.channel import MAX_PREBUFFER

log = logging.getLogger("siopg.supervisor")

# route(head) -> bytes to answer and close with, or None when the connection was handed over
RouteFn = Callable[[httphead.RequestHead, bytes, socket.socket], "bytes | None"]


@dataclass(slots=True)
class RouterLimits:
    max_head_size: int = 16384
    head_timeout: float = 5.0   # slowloris: the whole head must arrive within this
    linger_timeout: float = 2.0  # how long an error answer waits for the client to read it
    # connections still sending their head (plus answered ones lingering); past it the oldest
    # is cut, so slow clients cannot use up the supervisor's descriptors (capped at half the
    # open-files limit; see effective_max_pending)
    max_pending: int = 4096


def effective_max_pending(configured: int) -> int:
    """`configured`, but at most half the soft RLIMIT_NOFILE: the rest stays for the listener,
    the worker channels and connections being handed over."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - non-Unix
        return configured
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return configured
    return max(8, min(configured, soft // 2))


class _Pending:
    __slots__ = ("sock", "buf", "timer")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.timer: asyncio.TimerHandle | None = None


class Router:
    """Owns the listening socket; `route` decides where each request head goes."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        route: RouteFn,
        limits: RouterLimits | None = None,
    ) -> None:
        self._loop = loop
        self._listener = listener
        self._route = route
        self.limits = limits or RouterLimits()
        self._pending: dict[int, _Pending] = {}
        self._lingering: dict[int, tuple[socket.socket, asyncio.TimerHandle]] = {}
        self._accepting = False
        self.accepted = 0
        self.refused = 0
        self.evicted = 0  # slow heads cut early because max_pending was reached
        self._max_pending = effective_max_pending(self.limits.max_pending)

    # accepting -------------------------------------------------------------------------
    def start(self) -> None:
        if not self._accepting and self._listener.fileno() >= 0:
            self._accepting = True
            self._loop.add_reader(self._listener.fileno(), self._on_acceptable)

    def stop_accepting(self) -> None:
        """Stop taking new connections (the listening socket stays open for a restart)."""
        if self._accepting:
            self._accepting = False
            self._loop.remove_reader(self._listener.fileno())

    def close(self) -> None:
        self.stop_accepting()
        self._listener.close()
        for fd in list(self._pending):
            self._drop(fd)
        for fd in list(self._lingering):
            self._end_linger(fd)

    def _on_acceptable(self) -> None:
        for _ in range(128):
            try:
                conn, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: back off instead of spinning on a readable listener.
                    log.error("accept failed (%s); pausing accepts for 100 ms", exc)
                    self.stop_accepting()
                    self._loop.call_later(0.1, self.start)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            self.accepted += 1
            if len(self._pending) + len(self._lingering) >= self._max_pending:
                self._evict_oldest()
            conn.setblocking(False)
            p = _Pending(conn)
            fd = conn.fileno()
            self._pending[fd] = p
            if self._read(fd, p):
                # head not complete yet: wait for more, against a deadline
                p.timer = self._loop.call_later(self.limits.head_timeout, self._timeout, fd)
                self._loop.add_reader(fd, self._on_readable, fd)

    def _evict_oldest(self) -> None:
        """Make room for a new connection: end a lingering answer, else the oldest pending head
        (it had the most time; a slowloris client holds many of the oldest)."""
        self.evicted += 1
        if self._lingering:
            self._end_linger(next(iter(self._lingering)))
            return
        if self._pending:
            self.refused += 1
            self._drop(next(iter(self._pending)))

    # reading the head ------------------------------------------------------------------
    def _on_readable(self, fd: int) -> None:
        p = self._pending.get(fd)
        if p is not None and not self._read(fd, p):
            return

    def _read(self, fd: int, p: _Pending) -> bool:
        """Read what is available; True while the head is still incomplete."""
        limit = self.limits.max_head_size
        while True:
            room = MAX_PREBUFFER - len(p.buf)  # what one channel message can carry
            if room <= 0:
                break
            try:
                chunk = p.sock.recv(room)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(fd)
                return False
            if not chunk:
                self._drop(fd)
                return False
            p.buf += chunk
            if len(chunk) < room or len(p.buf) >= limit:
                break
        try:
            head = httphead.parse_head(p.buf, limit)
        except httphead.HeadError as err:
            self.refused += 1
            self._answer(fd, httphead.error_response(err))
            return False
        if head is None:
            return True
        self._forget(fd)
        try:
            answer = self._route(head, bytes(p.buf), p.sock)
        except Exception:  # a bug in routing must not take the supervisor down
            log.exception("routing failed")
            answer = httphead.SERVICE_UNAVAILABLE
        if answer is not None:
            self._pending[fd] = p
            self._answer(fd, answer)
        return False

    def _timeout(self, fd: int) -> None:
        p = self._pending.get(fd)
        if p is None:
            return
        p.timer = None
        self.refused += 1
        if p.buf:
            self._answer(fd, httphead.response(408, "Request Timeout", b"Request Timeout\n"))
        else:
            self._drop(fd)

    # answering and closing -------------------------------------------------------------
    def _forget(self, fd: int) -> _Pending | None:
        p = self._pending.pop(fd, None)
        if p is not None:
            if p.timer is not None:
                p.timer.cancel()
            try:
                self._loop.remove_reader(fd)
            except (ValueError, OSError):
                pass
        return p

    def _drop(self, fd: int) -> None:
        p = self._forget(fd)
        if p is not None:
            p.sock.close()

    def _answer(self, fd: int, data: bytes) -> None:
        """Send a short answer, then close gracefully so the client can read it (no RST)."""
        p = self._forget(fd)
        if p is None:
            return
        sock = p.sock
        try:
            sock.send(data)  # a few hundred bytes always fit an empty send buffer
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        timer = self._loop.call_later(self.limits.linger_timeout, self._end_linger, fd)
        self._lingering[fd] = (sock, timer)
        self._loop.add_reader(fd, self._drain_linger, fd)

    def _drain_linger(self, fd: int) -> None:
        entry = self._lingering.get(fd)
        if entry is None:
            return
        try:
            while True:
                if not entry[0].recv(65536):
                    break
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(fd)

    def _end_linger(self, fd: int) -> None:
        entry = self._lingering.pop(fd, None)
        if entry is None:
            return
        sock, timer = entry
        timer.cancel()
        try:
            self._loop.remove_reader(fd)
        except (ValueError, OSError):
            pass
        sock.close()

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._lingering)


def make_listener(host: str, port: int, backlog: int = 2048, defer_accept: int = 5) -> socket.socket:
    """A non-blocking listening socket (IPv6 when `host` is an IPv6 address)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "TCP_DEFER_ACCEPT") and defer_accept > 0:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer_accept)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
