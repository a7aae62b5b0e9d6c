"""examples/chat.py as a newcomer meets it: `siopg serve examples/chat.py:make_app` prints the
page URL, and the page, opened in headless Chromium, joins the room it shows without asking
anything first (no blocking prompt())."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import cdp
import pytest
from procs import wait_or_kill

from .conftest import ROOT

pytestmark = pytest.mark.skipif(not cdp.available(), reason="chromium is not installed")


@pytest.fixture
def chat_url() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "siopg", "serve", "examples/chat.py:make_app", "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.match(r"siopg: serving on (http://127\.0\.0\.1:\d+/)\s*$", first)  # the page: /
        assert match, first
        yield match[1]
    finally:
        proc.terminate()
        wait_or_kill(proc, 10, 5)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_the_page_joins_the_room_it_shows(chat_url: str, tmp_path: Path) -> None:
    chromium = await asyncio.to_thread(cdp.Chromium.start, tmp_path / "chromium-profile")
    try:
        async with aiohttp.ClientSession() as session:
            page = await chromium.page(session)
            try:
                await page.navigate(chat_url)
                log = ""
                for _ in range(150):  # up to ~15 s: the page connects, joins, shows it
                    log = str(await page.evaluate("document.getElementById('log').innerText"))
                    if "rooms: lobby" in log and re.search(r"guest-\w{4} joined lobby", log):
                        break
                    await asyncio.sleep(0.1)
                assert "rooms: lobby" in log and re.search(r"guest-\w{4} joined lobby", log), log
            finally:
                await page.close()
    finally:
        chromium.kill()
