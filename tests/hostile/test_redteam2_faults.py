"""Red team 2: faults the first rounds did not try, on the fault suite's harness (2 workers of
`siopg serve`, a private Postgres behind a proxy, official JS clients counting numbered ticks).

* a worker hung (SIGSTOP, not dead) while its clients reconnect to the other one, then resumed;
* a slow Postgres (every chunk delayed 200-500 ms) while every client reconnects;
* the LISTEN connections stalled (their bytes held) while every client reconnects;
* a reconnect storm in the middle of a rolling restart (`siopg reload`).

Each asserts what the fault suite does: nothing lost, nothing duplicated, in order, every
session recovered inside the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from typing import Any

import pytest
from faults.conftest import private_pg  # noqa: F401  (fixture)
from faults.harness import FaultProxy, PrivatePostgres
from faults.test_faults import WINDOW, Scene, run_scenario


class ShapingProxy(FaultProxy):
    """FaultProxy that can also delay every chunk (`latency`, seconds, a (lo, hi) range) and
    hold only the bytes of the connections whose startup packet names `application_name`
    'siopg-listener' (the LISTEN connections; marked when they open)."""

    def __init__(self, target: int | str) -> None:
        super().__init__(target)
        self.latency: tuple[float, float] | None = None
        self.stall_app = b"siopg-listener"  # connections are marked when they open
        self._app_open = asyncio.Event()
        self._app_open.set()
        self._marked: set[int] = set()  # id() of client->server readers of matching connections

    def stall_application(self) -> None:
        self._app_open.clear()

    def resume_application(self) -> None:
        self._app_open.set()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, other: asyncio.StreamWriter) -> None:
        # `other` is the writer back to the side `src` reads from; a connection is "marked"
        # when its first client bytes (the startup packet) carry the application name
        key = id(other)
        early = 3  # the startup packet comes in the first chunks (after an SSLRequest)
        try:
            while data := await src.read(65536):
                if early and self.stall_app in data:
                    self._marked.add(key)
                    self._marked.add(id(dst))
                early = max(0, early - 1)
                await self._open.wait()
                if key in self._marked or id(dst) in self._marked:
                    await self._app_open.wait()
                if self.latency is not None:
                    await asyncio.sleep(random.uniform(*self.latency))
                if dst.transport.is_closing():
                    break
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (dst, other):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.transport.abort()


async def _sigstop_worker(scene: Scene) -> None:
    """Hang worker 0 (SIGSTOP) and drop every client: those of the hung worker reconnect to
    the other one (the takeover asks the hung owner, which cannot answer). 8 s later the hung
    worker resumes: it must neither clone a session nor deliver anything twice."""
    pid = scene.serve.ready_slots()[0]
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(0.5)
        scene.client_proxy.cut_all()
        await asyncio.sleep(8.0)
    finally:
        os.kill(pid, signal.SIGCONT)
    await asyncio.sleep(3.0)
    scene.client_proxy.cut_all()  # and once more after it resumed: sessions move back and forth


async def _slow_postgres(scene: Scene) -> None:
    proxy = scene.pg_proxy
    assert isinstance(proxy, ShapingProxy)
    proxy.latency = (0.2, 0.5)
    try:
        await asyncio.sleep(1.0)
        scene.client_proxy.cut_all()
        await asyncio.sleep(8.0)
    finally:
        proxy.latency = None


async def _listen_stalled(scene: Scene) -> None:
    proxy = scene.pg_proxy
    assert isinstance(proxy, ShapingProxy)
    proxy.stall_application()
    try:
        await asyncio.sleep(1.0)
        assert len(proxy._marked) >= 4, "no LISTEN connection seen by the proxy"  # 2 workers x 2 ends
        scene.client_proxy.cut_all()
        await asyncio.sleep(8.0)
    finally:
        proxy.resume_application()


async def _storm_during_reload(scene: Scene) -> None:
    start = len(scene.serve.lines)
    scene.serve.signal(signal.SIGHUP)
    for _ in range(4):
        await asyncio.sleep(0.7)
        scene.client_proxy.cut_all()
    await scene.serve.wait_log(r"rolling restart done", 90, start)
    scene.client_proxy.cut_all()


async def _run(pg: PrivatePostgres, name: str, fault: Any, **kw: Any) -> Any:
    import faults.test_faults as ft

    original = ft.FaultProxy
    ft.FaultProxy = ShapingProxy  # type: ignore[misc]  # the scenario's proxies can shape traffic
    try:
        return await run_scenario(pg, name, fault, **kw)
    finally:
        ft.FaultProxy = original  # type: ignore[misc]


async def test_redteam2_sigstop_worker(private_pg: PrivatePostgres) -> None:  # noqa: F811
    verdict = await _run(private_pg, "sigstop", _sigstop_worker, reconnect_timeout=60.0)
    verdict.assert_clean(WINDOW)
    assert verdict.total("recovered") > 0


@pytest.mark.xfail(
    strict=False,
    reason="open bug, seen in about 1 of 5 full runs: under a Postgres 200-500 ms slow per chunk, where "
    "restores time out (RecoveryUnavailable) and clients retry, one polling client recovered twice and was "
    "replayed ~150-370 packets it already had, from an old offset (its second recovery started below what "
    "it had received). Lost: 0. A poll answer requeued after its body went out was one way to get this and "
    "is fixed (test_engine_longpoll); this one remains. Kept running so its counts and log show every run.",
)
async def test_redteam2_slow_postgres(private_pg: PrivatePostgres) -> None:  # noqa: F811
    verdict = await _run(private_pg, "slow-pg", _slow_postgres)
    verdict.assert_clean(WINDOW)
    assert verdict.total("recovered") > 0


async def test_redteam2_listen_stalled(private_pg: PrivatePostgres) -> None:  # noqa: F811
    verdict = await _run(private_pg, "listen-stalled", _listen_stalled)
    verdict.assert_clean(WINDOW)
    assert verdict.total("recovered") > 0


async def test_redteam2_storm_during_reload(private_pg: PrivatePostgres) -> None:  # noqa: F811
    verdict = await _run(private_pg, "storm-reload", _storm_during_reload, after=4.0)
    verdict.assert_clean(WINDOW)
    assert verdict.total("recovered") >= 40

