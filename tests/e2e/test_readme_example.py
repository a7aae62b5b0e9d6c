"""The README's example app must start with `siopg serve` and accept the official client.

The example is the first ```python block of README.md that defines `io = siopg.Server(...)`,
else an examples/*.py file that does; skipped while there is none.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import BACKEND, ROOT, ServerProcess
from .jsclient import JsDriver

pytestmark = pytest.mark.skipif(BACKEND == "node", reason="the README example is a siopg app")

_SERVER_DEF = re.compile(r"^io\s*=\s*siopg\.Server\(", re.MULTILINE)


def find_example(scratch: Path) -> Path | None:
    readme = ROOT / "README.md"
    if readme.exists():
        for block in re.findall(r"```python\n(.*?)```", readme.read_text(), re.DOTALL):
            if _SERVER_DEF.search(block) and "import siopg" in block:
                tmp = scratch / "readme_app.py"
                tmp.write_text(block)
                return tmp
    for path in sorted((ROOT / "examples").glob("*.py")):
        if _SERVER_DEF.search(path.read_text()):
            return path
    return None


@pytest.fixture
def example(tmp_path: Path) -> Path:
    path = find_example(tmp_path)
    if path is None:
        pytest.skip("no example app in examples/ or README.md yet")
    return path


async def test_readme_example_serves_clients(js: JsDriver, example: Path) -> None:
    server = ServerProcess(example.stem, app_path=example)
    try:
        server.wait_ready()
        clients = []
        for transports in (["polling", "websocket"], ["websocket"], ["polling"]):
            c = js.client()
            st = await c.connect(server.url, transports=transports)
            assert st["connected"], (st, server.logs())
            clients.append(c)
        if 'socket.on("chat")' in example.read_text():
            # the README's chat example: everyone in the lobby gets the message, the sender an ack
            for c in clients:
                await c.on("chat")
            assert await clients[0].emit_ack("chat", "hello 👋") == ["delivered"]
            me = (await clients[0].state())["id"]
            for c in clients:
                got = await c.wait_for("chat")
                assert got[0][0] == {"from": me, "text": "hello 👋"}, got
        assert server.stop() == 0, server.logs()
    finally:
        server.discard()
