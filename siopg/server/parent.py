"""Dynamic namespaces: a parent (regex or callable) that creates child namespaces on demand.

Like socket.io's ParentNamespace, every operation on the parent reaches all its current
children: `emit`, `to`/`in_`/`except_` and the flags broadcast through each child's adapter.
Going past the reference (which throws or does nothing there), `fetch_sockets`,
`sockets_join`/`sockets_leave`/`disconnect_sockets` and broadcast acks also work, by running
the same operation on each child and merging the results. A namespace created later is not
reached by an operation already running.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from siopg._log import clip
from siopg.names import RESERVED_EVENTS, check_event_name
from siopg.server.broadcast import BroadcastOperator, _rooms
from siopg.server.callbacks import Callback
from siopg.server.errors import AckTimeoutError
from siopg.server.namespace import Namespace, NamespaceMatcher
from siopg.server.tasks import DONE, Done

if TYPE_CHECKING:  # pragma: no cover
    from siopg.server.server import Server

logger = logging.getLogger("siopg.server")


class ParentNamespace(Namespace):
    """Matches dynamic namespace names (regex or callable) and creates child namespaces.

    Middlewares and connection handlers registered on it are copied to every child, which is
    created on the first matching CONNECT. With the server's `cleanup_empty_child_namespaces`,
    a child is forgotten (and its adapter closed) once its last socket leaves.
    """

    _count = 0

    def __init__(self, server: Server, matcher: NamespaceMatcher) -> None:
        ParentNamespace._count += 1
        self.matcher = matcher
        self._match: Callback | None = (
            None if isinstance(matcher, re.Pattern) else Callback(matcher, "namespace matcher")
        )
        self.children: set[Namespace] = set()
        super().__init__(server, f"/_{ParentNamespace._count}", with_adapter=False)

    async def matches(self, name: str, auth: dict[str, Any]) -> bool:
        if isinstance(self.matcher, re.Pattern):
            return self.matcher.search(name) is not None
        return self._match is not None and bool(await self._match.wait(name, auth))

    def create_child(self, name: str) -> Namespace:
        child = Namespace(self.server, name)
        child._parent = self
        child._fns.extend(self._fns)  # the same Callbacks: registered once, on the parent
        connection = self._handlers.get("connection")
        if connection:
            child._handlers["connection"] = list(connection)
        self.children.add(child)
        return child

    def use(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        super().use(fn)
        for child in self.children:
            child._fns.append(self._fns[-1])
        return fn

    def _operator(self) -> BroadcastOperator:
        return ParentBroadcastOperator(self)

    async def server_count(self) -> int:
        return await self.server.sockets.server_count()

    def server_side_emit(self, event: str, *args: Any) -> None:
        raise NotImplementedError("server_side_emit is not supported on a dynamic namespace parent")

    async def server_side_emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> list[Any]:
        raise NotImplementedError("server_side_emit is not supported on a dynamic namespace parent")

    def _child_emptied(self, child: Namespace) -> None:
        """A child lost a socket or finished a connection attempt: maybe forget it (socket.io's
        cleanupEmptyChildNamespaces). A child with a connection still being set up is kept."""
        if not self.server.cleanup_empty_child_namespaces or child not in self.children:
            return
        if child.sockets or child._preconnect or child._joining:
            return
        self._forget_child(child)

    def _forget_child(self, child: Namespace) -> None:
        """Drop an empty child: the server forgets its name and its adapter is closed."""
        self.children.discard(child)
        nsps = self.server._nsps
        if nsps.get(child.name) is child:
            del nsps[child.name]
        self.server._tasks.spawn(child._close_adapter(), f"close namespace {clip(child.name)}")


class ParentBroadcastOperator(BroadcastOperator):
    """A BroadcastOperator over every child of a ParentNamespace (same rooms, excepts, flags)."""

    __slots__ = ()

    def _per_child(self) -> list[BroadcastOperator]:
        nsp: ParentNamespace = self.nsp  # type: ignore[assignment]
        return [
            BroadcastOperator(child, self.rooms, self.except_rooms, self.flags)
            for child in list(nsp.children)
        ]

    def emit(self, event: str, *args: Any, callback: Callable[[Any, Any], Any] | None = None) -> Done:
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        check_event_name(event, self.nsp.server.max_event_name_length)
        operators = self._per_child()
        if callback is None:
            for op in operators:
                op.emit(event, *args)
        else:
            self._emit_with_acks(operators, event, args, callback)
        return DONE

    def _emit_with_acks(
        self,
        operators: list[BroadcastOperator],
        event: str,
        args: tuple[Any, ...],
        callback: Callable[[Any, Any], Any],
    ) -> None:
        """Each child collects its answers (with its own timer); report once all are done."""
        report = Callback(callback, "ack callback")
        tasks = self.nsp.server._tasks
        if not operators:  # nobody to ask: answer like an empty broadcast, asynchronously
            asyncio.get_running_loop().call_soon(report.fire, tasks, (None, []))
            return
        parts: list[list[Any]] = [[] for _ in operators]
        remaining = len(operators)
        failed = False

        def child_done(index: int) -> Callable[[Any, Any], None]:
            def done(err: Any, responses: Any) -> None:
                nonlocal remaining, failed
                parts[index] = list(responses or ())
                failed = failed or err is not None
                remaining -= 1
                if remaining == 0:
                    merged = [answer for part in parts for answer in part]
                    error = AckTimeoutError("operation has timed out", merged) if failed else None
                    report.fire(tasks, (error, merged))

            return done

        for index, op in enumerate(operators):
            op.emit(event, *args, callback=child_done(index))

    async def fetch_sockets(self) -> list[Any]:
        found: list[Any] = []
        for part in await asyncio.gather(*(op.fetch_sockets() for op in self._per_child())):
            found.extend(part)
        return found

    def sockets_join(self, room: str | Iterable[str]) -> Done:
        rooms = sorted(_rooms(room, self.nsp.server.max_room_length))
        for op in self._per_child():
            op.sockets_join(rooms)
        return DONE

    def sockets_leave(self, room: str | Iterable[str]) -> Done:
        rooms = sorted(_rooms(room, self.nsp.server.max_room_length))
        for op in self._per_child():
            op.sockets_leave(rooms)
        return DONE

    def disconnect_sockets(self, close: bool = False) -> Done:
        for op in self._per_child():
            op.disconnect_sockets(close)
        return DONE

