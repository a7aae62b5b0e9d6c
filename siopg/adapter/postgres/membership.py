"""Membership: which servers serve which namespace, from the `<schema>.nodes` heartbeats.

Each (server, namespace) is a row, inserted when a namespace adapter registers (it counts at
once), refreshed every `heartbeat_interval`, deleted on a clean close (it leaves at once); a
server silent for `heartbeat_timeout` no longer counts. Cluster requests stop waiting for
servers that left (`ClusterAdapter.keep_only_servers`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from siopg._log import clip
from siopg.adapter.postgres.store import Store


class Membership:
    """This server's heartbeats and its view of the other live servers."""

    def __init__(self, uid: str, heartbeat_timeout: float, report: Callable[[BaseException], None]) -> None:
        self.uid = uid
        self.heartbeat_timeout = heartbeat_timeout
        self.report = report
        self.store: Store | None = None  # set while the cluster runs
        self.alive: dict[str, set[str]] = {}  # namespace -> live server ids, as last read
        self._bad_node_rows: set[str] = set()

    async def join(self, namespaces: list[str]) -> None:
        """Heartbeat `namespaces` now: this server counts for them at once."""
        assert self.store is not None
        self._heartbeat_failed(await self.store.heartbeat(self.uid, namespaces))

    async def leave(self, namespaces: list[str]) -> None:
        """This server leaves the count of `namespaces` at once (a clean close)."""
        if self.store is not None:
            await self.store.leave(self.uid, namespaces)

    async def heartbeat(self, namespaces: Iterable[str]) -> dict[str, set[str]]:
        """One beat: refresh our rows, then read who is alive (returned and kept in `alive`)."""
        assert self.store is not None
        self._heartbeat_failed(await self.store.heartbeat(self.uid, list(namespaces)))
        self.alive = await self.store.alive(self.heartbeat_timeout)
        return self.alive

    def _heartbeat_failed(self, names: list[str]) -> None:
        """Report namespaces whose nodes row Postgres refused (once each: they keep failing)."""
        for name in names:
            if name not in self._bad_node_rows and len(self._bad_node_rows) < 1000:
                self._bad_node_rows.add(name)
                self.report(
                    RuntimeError(f"namespace {clip(name, 100)!s} cannot be heartbeated; other servers do not count it")
                )

    async def others(self, nsp: str) -> set[str]:
        """Ids of the other live servers serving `nsp` (the last heartbeat's view if Postgres
        cannot answer now)."""
        try:
            assert self.store is not None
            self.alive = await self.store.alive(self.heartbeat_timeout)
        except Exception as exc:  # noqa: BLE001 - fall back to the last heartbeat's view
            self.report(exc)
        return set(self.alive.get(nsp, ())) - {self.uid}

    async def count(self, nsp: str) -> int:
        """How many live servers serve `nsp`, this one included (at least 1)."""
        try:
            assert self.store is not None
            count = await self.store.server_count(nsp, self.heartbeat_timeout)
        except Exception as exc:  # noqa: BLE001
            self.report(exc)
            count = len(self.alive.get(nsp, set()) | {self.uid})
        return max(1, count)
