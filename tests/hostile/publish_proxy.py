"""A TCP proxy to Postgres that can lose the server's replies: the publish tests' fault injector.

Queries still reach Postgres while `hold` is set, so a statement runs and commits, but what
Postgres answers is held back; `cut_all()` then aborts every connection, and the held reply
is gone. That is a commit whose reply was lost (a crash, a partition, a connection cut after
COMMIT): the client cannot tell whether it landed.
"""

from __future__ import annotations

import asyncio
import contextlib


class ReplyLosingProxy:
    def __init__(self, target: int | str) -> None:
        self.target = target  # a loopback TCP port, or the path of a Unix socket
        self.port = 0
        self.hold = False  # swallow every connection's replies from now on
        # ... or, per connection, those after the execution of a statement whose text contains
        # `hold_on` (asyncpg prepares a statement (Parse, with its text and a name), may run
        # type introspection, then executes it (Bind, with the name): hold from that Bind)
        self.hold_on: bytes | None = None
        self.held_bytes = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> ReplyLosingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if isinstance(self.target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.target)
            else:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        marked: list[bytes | bool] = [b""]  # the marked statement's name; True once it runs
        for src, dst, replies in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.get_running_loop().create_task(self._pipe(src, dst, replies, marked))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool, marked: list[bytes | bool]
    ) -> None:
        try:
            while data := await src.read(65536):
                if not replies and self.hold_on is not None and marked[0] is not True:
                    if data[:1] == b"P" and self.hold_on in data:
                        marked[0] = data[5:data.index(b"\x00", 5) + 1]  # the statement's name
                    elif data[:1] == b"B" and marked[0] and marked[0] in data[:80]:
                        marked[0] = True
                if replies and (self.hold or marked[0] is True):
                    self.held_bytes += len(data)  # swallowed: the reply never arrives
                    continue
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()
            self._writers.discard(dst)

    def cut_all(self) -> None:
        """Abort every open connection (both sides); held replies are lost."""
        for w in list(self._writers):
            w.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut_all()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
