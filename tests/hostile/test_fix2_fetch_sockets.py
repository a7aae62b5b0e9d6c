"""Red team: one socket whose `socket.data` msgpack cannot pack (a datetime the app stored)
must not sink its server's whole fetch_sockets answer. Before the fix, server B dropped its
FETCH_SOCKETS_RESPONSE and fetch_sockets() on A failed (timed out) for everyone."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from .fix2_support import Raw, fix2_procs, schema  # noqa: F401  (fixtures)


async def test_one_unpackable_socket_does_not_sink_fetch_sockets(fix2_procs: Any) -> None:  # noqa: F811
    a = await fix2_procs("A")
    b = await fix2_procs("B")
    async with aiohttp.ClientSession() as s:
        asker = await Raw.open(s, a.url)
        odd = await Raw.open(s, b.url)
        fine = await Raw.open(s, b.url)
        ids = {json.loads(r.reply[2:])["sid"] for r in (asker, odd, fine)}
        assert await odd.call('["setodd"]') == [True]
        got = await asker.call('["fetch"]', timeout=15)
        assert got == [{"ids": sorted(ids)}], got
    assert "sent with None in place of what the cluster cannot carry: data" in b.logs()
