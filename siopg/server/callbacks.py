"""Calling the application's functions: handlers, listeners, middlewares, ack callbacks.

Each function the application hands over is normalised ONCE, when it is registered, into a
`Callback` (asyncpg's `_Callback.from_callable` is the model): whether it takes an `ack`
keyword, how many positional arguments it declares (extra ones are dropped, JS-like, for
reserved events) and a label for the logs. Calling it then costs a call and an
`isawaitable` check, sync or async alike: `fire()` runs a returned awaitable as a task of the
server's TaskSet (kept until it ends) and logs errors instead of raising them into protocol
code; `wait()` awaits it, for the callers that must know the outcome (middlewares).

`PendingAck` is an emit waiting for its acknowledgement: the callback, what to call if the
acknowledgement never comes, and the timeout timer, in one small object (nothing is hung on
function objects).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from siopg.server.tasks import TaskSet

logger = logging.getLogger("siopg.server")

# (takes_ack, max_positional) by code object: closures made per connection from one `def` or
# lambda share it, so the cache stays as small as the program text.
_Shape = tuple[bool, int | None]
_shapes: dict[Any, _Shape] = {}


def _shape(fn: Callable[..., Any]) -> _Shape:
    func = getattr(fn, "__func__", fn)
    code = getattr(func, "__code__", None)
    key: Any = (code, func is not fn) if code is not None else fn
    shape = _shapes.get(key)
    if shape is not None:
        return shape
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: pass everything
        shape = (False, None)
    else:
        takes_ack = False  # a parameter named `ack`, or **kwargs
        max_pos: int | None = 0  # None: *args
        for p in params:
            if p.kind is p.VAR_KEYWORD or (
                p.name == "ack" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            ):
                takes_ack = True
            elif p.kind is p.VAR_POSITIONAL:
                max_pos = None
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and max_pos is not None:
                max_pos += 1
        shape = (takes_ack, max_pos)
    if len(_shapes) < 10_000:  # bounded anyway (callables without code are keyed by identity)
        _shapes[key] = shape
    return shape


class Callback:
    """An application function, inspected once at registration; call it with fire() or wait()."""

    __slots__ = ("fn", "max_positional", "takes_ack", "what")

    def __init__(self, fn: Callable[..., Any], what: str = "handler") -> None:
        if not callable(fn):
            raise TypeError(f"{what} must be callable, not {type(fn).__name__}")
        self.fn = fn
        self.takes_ack, self.max_positional = _shape(fn)
        self.what = what  # for the logs: "error in <what> <fn>"

    def __repr__(self) -> str:
        return f"<Callback {self.what} {self.fn!r}>"

    def fire(
        self,
        tasks: TaskSet,
        args: Sequence[Any],
        ack: Callable[..., Any] | None = None,
        trim: bool = False,
    ) -> None:
        """Call `fn(*args[, ack=ack])` now (`ack` only if it takes one); a returned awaitable
        runs as a task of `tasks`. Errors are logged, never raised.

        `trim` drops positional arguments the function does not declare (JS semantics), for
        reserved events like "disconnect" whose extra `description` most handlers ignore.
        """
        limit = self.max_positional
        if trim and limit is not None and len(args) > limit:
            args = args[:limit]
        try:
            result = self.fn(*args, ack=ack) if ack is not None and self.takes_ack else self.fn(*args)
        except Exception:
            logger.exception("error in %s %r", self.what, self.fn)
            return
        if inspect.isawaitable(result):
            tasks.spawn(result, self.what)

    async def wait(self, *args: Any) -> Any:
        """Call `fn(*args)` and await its result if it is awaitable; errors propagate."""
        result = self.fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result


def remove(callbacks: list[Callback], fn: Callable[..., Any] | None) -> None:
    """Unregister `fn` (its first registration) from `callbacks`; every one when `fn` is None."""
    if fn is None:
        callbacks.clear()
        return
    for index, callback in enumerate(callbacks):
        if callback.fn == fn:
            del callbacks[index]
            return


class PendingAck:
    """One emit waiting for the client's acknowledgement (an entry of `Socket.acks`).

    `answer(args)` calls `callback` with the ack's arguments (after a `None` error argument
    when `error_first`: timed user callbacks); `fail(err)` (timeout, socket gone) calls
    `on_fail(err)` if there is one. Both cancel the timer. The owner removes the entry before
    calling either, so one of them runs at most once per socket.
    """

    __slots__ = ("callback", "error_first", "on_fail", "timer")

    def __init__(
        self,
        callback: Callback,
        on_fail: Callback | None = None,
        error_first: bool = False,
    ) -> None:
        self.callback = callback
        self.on_fail = on_fail
        self.error_first = error_first
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def for_user(cls, fn: Callable[..., Any], timed: bool) -> PendingAck:
        """An application's `callback=`: with a timeout it gets an error first (None, or an
        AckTimeoutError on timeout or disconnection), like socket.io's `timeout(ms).emit()`."""
        callback = Callback(fn, "ack callback")
        if timed:
            return cls(callback, callback, error_first=True)
        return cls(callback)

    def answer(self, tasks: TaskSet, args: Sequence[Any]) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.callback.fire(tasks, (None, *args) if self.error_first else args)

    def fail(self, tasks: TaskSet, err: BaseException) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.on_fail is not None:
            self.on_fail.fire(tasks, (err,))
