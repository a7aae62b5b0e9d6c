"""Red team: a lone surrogate a client sends in its CONNECT auth or in event data (valid JSON:
"\\ud800") must not break cluster-wide queries for everyone else.

The default parser accepts lone surrogates (JSON allows them, and the server escapes them back
when it sends), and an app commonly keeps what clients send in `socket.data`. Every server
answers `fetch_sockets()` with all its matching sockets in ONE cluster message; when one
socket's handshake or data could not be packed (msgpack refuses lone surrogates), the whole
answer was dropped, so every `fetch_sockets()` on every other server timed out (AckTimeoutError)
for as long as that client stayed connected.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from .redteam_support import Raw, rt_procs, schema  # noqa: F401  (fixtures)


@pytest.mark.parametrize("where", ["auth", "data"])
async def test_lone_surrogate_of_one_client_does_not_break_fetch_sockets(rt_procs: Any, where: str) -> None:  # noqa: F811
    a, b = await rt_procs("A"), await rt_procs("B")
    async with aiohttp.ClientSession() as s:
        victim = await Raw.open(s, b.url)
        asker = await Raw.open(s, a.url)
        before = (await asker.call('["fetch"]'))[0]
        assert len(before["ids"]) == 2, before
        if where == "auth":
            attacker = await Raw.open(s, b.url, '40{"token":"\\ud800"}')
        else:
            attacker = await Raw.open(s, b.url)
            assert await attacker.call('["setdata","\\udfff"]') == [True]
        assert attacker.reply.startswith("40{"), attacker.reply
        after = (await asker.call('["fetch"]'))[0]
        assert "error" not in after, after
        assert len(after["ids"]) == 3, (after, victim.reply)
