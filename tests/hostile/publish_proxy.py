"""A TCP proxy to Postgres that can lose the server's replies: the publish tests' fault injector.

Queries still reach Postgres while `hold` is set, so a statement runs and commits, but what
Postgres answers is held back; `cut_all()` then aborts every connection, and the held reply
is gone. That is a commit whose reply was lost (a crash, a partition, a connection cut after
COMMIT): the client cannot tell whether it landed.
"""

from __future__ import annotations

from typing import Any

from pg.harness import SwitchProxy


class ReplyLosingProxy(SwitchProxy):
    def __init__(self, target: int | str) -> None:
        super().__init__(target)  # a loopback TCP port, or the path of a Unix socket
        self.hold = False  # swallow every connection's replies from now on
        # ... or, per connection, those after the execution of a statement whose text contains
        # `hold_on` (asyncpg prepares a statement (Parse, with its text and a name), may run
        # type introspection, then executes it (Bind, with the name): hold from that Bind)
        self.hold_on: bytes | None = None
        self.held_bytes = 0

    def _connection_state(self) -> list[bytes | bool]:
        return [b""]  # the marked statement's name; True once it runs

    def _forward(self, data: bytes, to_client: bool, state: Any) -> bytes | None:
        marked: list[bytes | bool] = state
        if not to_client and self.hold_on is not None and marked[0] is not True:
            if data[:1] == b"P" and self.hold_on in data:
                marked[0] = data[5:data.index(b"\x00", 5) + 1]  # the statement's name
            elif data[:1] == b"B" and marked[0] and marked[0] in data[:80]:
                marked[0] = True
        if to_client and (self.hold or marked[0] is True):
            self.held_bytes += len(data)  # swallowed: the reply never arrives
            return None
        return data
