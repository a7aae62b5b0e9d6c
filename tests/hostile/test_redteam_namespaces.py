"""Red team: ONE connection must not take every dynamic namespace slot of the server.

`max_dynamic_namespaces` (default 1000) bounds child namespaces over all clients, and a child
in use (it has a socket) is never forgotten. Before `max_namespaces_per_connection` (default
50), one connection could CONNECT to a thousand children, so every other client's CONNECT to a
new child was refused ("Too many namespaces") for as long as that connection stayed open.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .redteam_support import Raw
from .server_fixtures import serve

APPS = Path(__file__).resolve().parents[1] / "apps"


@pytest.fixture(scope="module")
def basic_server() -> Iterator[Any]:
    """tests/apps/basic.py: dynamic children /dyn-<n> (memory adapter)."""
    yield from serve(APPS / "basic.py")


async def test_one_connection_cannot_take_every_dynamic_namespace(basic_server: Any) -> None:
    async with aiohttp.ClientSession() as s:
        hog = await Raw.open(s, basic_server.url)
        # one CONNECT per child, all in one WebSocket message stream
        for n in range(1000):
            await hog.ws.send_str(f"40/dyn-{n},")
        answers = [await hog.packet() for _ in range(1000)]
        accepted = sum(a.startswith("40/dyn-") for a in answers)
        # max_namespaces_per_connection's default (50), the hog's main namespace included
        assert accepted == 49, accepted
        assert sum("Too many namespaces for this connection" in a for a in answers) == 951
        other = await Raw.open(s, basic_server.url, "40/dyn-999999,")
        assert other.reply.startswith("40/dyn-999999,"), (accepted, other.reply)
