"""Running a middleware chain: `fn(subject, next_)`, sync or async, next_(err) or raise to refuse."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from siopg.server.callbacks import Callback
from siopg.server.errors import ConnectError

logger = logging.getLogger("siopg.server")


def _as_error(err: Any) -> BaseException:
    if isinstance(err, BaseException):
        return err
    return ConnectError(str(err))


async def run_one(fn: Callback, subject: Any) -> BaseException | None:
    """Run one middleware; returns the refusal (an exception) or None to go on.

    A middleware that returns without calling `next_` is waited for (it may call it later),
    like socket.io; one that raises refuses with that exception.
    """
    loop = asyncio.get_running_loop()
    decided: asyncio.Future[BaseException | None] = loop.create_future()

    def next_(err: Any = None) -> None:
        if not decided.done():
            decided.set_result(None if err is None else _as_error(err))

    try:
        await fn.wait(subject, next_)
    except Exception as exc:  # raising refuses, like next_(exc)
        if isinstance(exc, ConnectError):
            next_(exc)
        else:  # a bug, not a refusal: log it, do not leak its text to the client
            logger.exception("error in middleware %r", fn.fn)
            next_(ConnectError("Internal server error"))
    return await decided


async def run_middlewares(fns: Sequence[Callback], subject: Any) -> BaseException | None:
    for fn in list(fns):
        err = await run_one(fn, subject)
        if err is not None:
            return err
    return None


def connect_error_data(err: BaseException) -> dict[str, Any]:
    """The CONNECT_ERROR payload: {"message", "data"} (data only when given)."""
    if isinstance(err, ConnectError):
        payload: dict[str, Any] = {"message": err.message}
        if err.data is not None:
            payload["data"] = err.data
        return payload
    data = getattr(err, "data", None)
    payload = {"message": str(err) or type(err).__name__}
    if data is not None:
        payload["data"] = data
    return payload
