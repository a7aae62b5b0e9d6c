"""Calling user handlers: sync or async, `ack` keyword detection, JS-like extra-argument trimming.

Handlers are inspected once (cached) so dispatching an event costs a dict lookup, not a
signature parse. Coroutines returned by handlers run as tasks that the owning server keeps a
reference to (so they are not garbage collected mid-flight) and whose errors are logged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Callable, Generator

logger = logging.getLogger("siopg.server")


@dataclass(frozen=True, slots=True)
class _Shape:
    takes_ack: bool  # a parameter named `ack` or **kwargs
    max_positional: int | None  # None: *args


_shapes: dict[Any, _Shape] = {}


def _shape(fn: Callable[..., Any]) -> _Shape:
    # Keyed by code object: closures made per connection from one `def`/lambda share it, so
    # the cache stays as small as the program text.
    func = getattr(fn, "__func__", fn)
    code = getattr(func, "__code__", None)
    key: Any = (code, func is not fn) if code is not None else fn
    shape = _shapes.get(key)
    if shape is not None:
        return shape
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: pass everything
        shape = _Shape(False, None)
    else:
        takes_ack = False
        max_pos: int | None = 0
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                takes_ack = True
            elif p.name == "ack" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                takes_ack = True
            elif p.kind is p.VAR_POSITIONAL:
                max_pos = None
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and max_pos is not None:
                max_pos += 1
        shape = _Shape(takes_ack, max_pos)
    if len(_shapes) < 10_000:  # bounded anyway (callables without code are keyed by identity)
        _shapes[key] = shape
    return shape


def takes_ack(fn: Callable[..., Any]) -> bool:
    return _shape(fn).takes_ack


class TaskSet:
    """Keeps strong references to background tasks and logs their failures."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any, what: str = "handler") -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        task.set_name(what)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("error in %s", task.get_name(), exc_info=exc)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for the running tasks (then cancel stragglers) so nothing outlives close()."""
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current]
        if not pending:
            return
        done, still = await asyncio.wait(pending, timeout=timeout)
        for t in still:
            t.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)


def call(
    tasks: TaskSet,
    fn: Callable[..., Any],
    args: list[Any] | tuple[Any, ...],
    ack: Callable[..., Any] | None = None,
    trim: bool = False,
    what: str = "handler",
) -> None:
    """Call `fn(*args[, ack=ack])`; run a returned coroutine as a task. Errors are logged.

    `trim` drops positional arguments the handler does not declare (JS semantics), used for
    reserved events like "disconnect" whose extra `description` most handlers ignore.
    """
    shape = _shape(fn)
    if trim and shape.max_positional is not None and len(args) > shape.max_positional:
        args = args[: shape.max_positional]
    try:
        if ack is not None and shape.takes_ack:
            result = fn(*args, ack=ack)
        else:
            result = fn(*args)
    except Exception:
        logger.exception("error in %s %r", what, fn)
        return
    if inspect.isawaitable(result):
        tasks.spawn(result, what)


class Done:
    """An already-finished awaitable: emit() works eagerly and may still be awaited."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover  (makes this a generator)


DONE = Done()
