"""examples/chat.py as a newcomer meets it: `siopg serve examples/chat.py:make_app` prints the
page URL, and the page, opened in headless Chromium, joins the room it shows without asking
anything first (no blocking prompt())."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest
from procs import wait_or_kill

from .conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


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


def test_the_page_joins_the_room_it_shows(chat_url: str) -> None:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="siopg-chat-chromium-") as profile:
        page = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
             "--virtual-time-budget=5000", "--dump-dom", chat_url],
            capture_output=True, text=True, timeout=60,
        ).stdout
    log = re.search(r'<div id="log">(.*?)</div>', page, re.S)
    assert log, page[-2000:]
    assert "rooms: lobby" in log[1] and re.search(r"guest-\w{4} joined lobby", log[1]), log[1]
