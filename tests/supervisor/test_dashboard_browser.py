"""The cluster dashboard in headless Chromium against `siopg serve --workers 2 --dashboard`.

Real processes end to end: the supervisor and its two workers on the test Postgres, official
socket.io clients (node) spread over both workers, Chromium signing in with basic auth and
reading the page while it polls (each poll may be answered by either worker). Screenshots go
to $SIOPG_TEST_ARTIFACTS (default tests/artifacts/). Skipped when chromium is not installed.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import cdp
import pytest
from e2e.jsclient import DriverProcess, JsClient, JsDriver
from sv_helpers import APPS, REPO

pytestmark = pytest.mark.skipif(not cdp.available(), reason="chromium is not installed")

APP = str(APPS / "siopg_app.py") + ":io"
AUTH = ("u", "p")
ARTIFACTS = Path(os.environ.get("SIOPG_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
# what the page shows, read from the DOM the page's script keeps up to date
READ_PAGE = """JSON.stringify({
  status: document.getElementById("status").dataset.state,
  sockets: document.querySelector('[data-stat="sockets"]').textContent,
  servers: document.querySelector('[data-stat="server_count"]').textContent,
  websocket: document.querySelector('[data-stat="engine.by_transport.websocket"]').textContent,
  attempted: document.querySelector('[data-stat="recovery.attempted"]').textContent,
  succeeded: document.querySelector('[data-stat="recovery.succeeded"]').textContent,
  rows: [...document.querySelectorAll("#servers tr")].map((tr) => ({
    worker: tr.children[1].textContent, sockets: tr.children[5].textContent, health: tr.dataset.health })),
})"""


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[cdp.Page]:
    chromium = await asyncio.to_thread(cdp.Chromium.start, tmp_path / "chromium-profile")
    try:
        async with aiohttp.ClientSession() as session:
            page = await chromium.page(session)
            try:
                yield page
            finally:
                await page.close()
    finally:
        chromium.kill()


@pytest.fixture
async def js() -> AsyncIterator[JsDriver]:
    process = DriverProcess()
    driver = JsDriver(process)
    try:
        yield driver
    finally:
        await driver.aclose()
        process.close()


def live(shown: dict[str, Any]) -> list[dict[str, Any]]:
    """The page's server rows but those shown as down (servers of earlier tests on the same database)."""
    return [r for r in shown["rows"] if r["health"] != "down"]


async def page_until(page: cdp.Page, check: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
    """What the page shows, once `check` holds (the page refreshes itself every second)."""
    import json

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        shown = json.loads(await page.evaluate(READ_PAGE))
        if check(shown):
            return shown
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the page never showed what was expected; it shows {shown}")
        await asyncio.sleep(0.25)


async def connect_spread(js: JsDriver, url: str, n: int) -> list[tuple[JsClient, int]]:
    """n clients (polling then websocket), with the worker each landed on."""
    out = []
    for i in range(n):
        c = js.client(f"c{i}")
        state = await c.connect(url, transports=["websocket"])
        assert state["connected"], state
        who = (await c.emit_ack("whoami"))[0]
        out.append((c, int(who["worker"])))
    return out


async def test_cluster_dashboard_in_chromium(
    supervisor_factory: Any, browser: cdp.Page, js: JsDriver
) -> None:
    sv = supervisor_factory(APP, 2, "--dashboard", "--dashboard-auth", ":".join(AUTH))
    await asyncio.to_thread(sv.wait_serving)
    clients = await connect_spread(js, sv.url, 6)
    workers = {w for _, w in clients}
    assert len(workers) == 2, f"clients did not spread over both workers: {workers}"

    # signing in: the server's 401 challenge answered with the credentials
    await browser.sign_in_with(*AUTH)
    await browser.navigate(sv.url + "/dashboard")
    shown = await page_until(browser, lambda s: s["sockets"] == "6" and s["servers"] == "2"
                             and len(live(s)) == 2 and all(r["health"] == "ok" for r in live(s)))
    assert sorted(r["worker"] for r in live(shown)) == sorted(str(w) for w in workers)
    per_worker = {str(w): sum(1 for _, x in clients if x == w) for w in workers}
    assert {r["worker"]: int(r["sockets"]) for r in live(shown)} == per_worker
    assert shown["websocket"] == "6" and shown["status"] == "live"

    # stable: several polls, answered by whichever worker, all show the same cluster
    readings, answered_by = [], set()
    async with aiohttp.ClientSession(headers={"Authorization": basic(*AUTH)}) as http:
        for _ in range(8):
            async with http.get(sv.url + "/dashboard/stats.json") as resp:
                assert resp.status == 200
                doc = await resp.json()
            answered_by.add(doc["pid"])
            readings.append((doc["sockets"], doc["server_count"], doc["engine"]["open"],
                             tuple(sorted((s["worker"], s["sockets"]) for s in doc["servers"]
                                          if s["health"] != "down"))))
            await asyncio.sleep(0.2)
        async with http.get(sv.url + "/dashboard/stats.json", headers={"Authorization": basic("u", "wrong")}) as resp:
            assert resp.status == 401
    assert len(set(readings)) == 1, readings
    assert readings[0][:3] == (6, 2, 6)
    for _ in range(3):
        shown_again = await page_until(browser, lambda s: True)
        assert (shown_again["sockets"], shown_again["servers"]) == ("6", "2")
        await asyncio.sleep(1.0)
    await browser.screenshot(ARTIFACTS / "dashboard-2-workers.png")

    # a transport drop: the client recovers its session, the page counts it
    before = int(shown["attempted"].replace(",", ""))
    dropped, _ = clients[0]
    await dropped.close_engine()
    again = await dropped.reconnect()
    assert again["recovered"] is True, again
    shown = await page_until(browser, lambda s: int(s["succeeded"]) >= 1 and int(s["attempted"]) > before)
    assert shown["sockets"] == "6"
    await browser.screenshot(ARTIFACTS / "dashboard-after-recovery.png")
