"""Red team: two connections presenting the same live pid at the same time, on two other
servers, must not BOTH get the session (decision 3 of issue 7: a takeover, never a clone).

Each restoring server asks the live owner to hand the session over, then claims the row. The
second one's re-read sees the row live again, now owned by the first restorer, and (having
"asked" already) claimed it as well: both connections carried the victim's id and both got
its private emits.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from .redteam_support import Raw, rt_procs, schema  # noqa: F401  (fixtures)


async def _events(raw: Raw, seconds: float) -> list[str]:
    """Everything `raw` receives for `seconds` (stops at a close)."""
    got: list[str] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            data = await raw.packet(left)
        except TimeoutError:
            break
        got.append(data)
        if data.startswith("<"):
            break
    return got


@pytest.mark.parametrize("where", ["BC", "AAAA", "AB"])
async def test_simultaneous_takeovers_never_clone(rt_procs: Any, where: str) -> None:  # noqa: F811
    """The victim is on A; one newcomer per letter of `where` goes to that server, all at once."""
    servers = {"A": await rt_procs("A"), "B": await rt_procs("B"), "C": await rt_procs("C")}
    async with aiohttp.ClientSession() as s:
        victim = await Raw.open(s, servers["A"].url)
        reply = json.loads(victim.reply[2:])
        sid, pid = reply["sid"], reply["pid"]
        await asyncio.sleep(0.5)  # the session row is written (snapshot interval 0.1 s)
        hello = "40" + json.dumps({"pid": pid})
        newcomers = await asyncio.gather(*(Raw.open(s, servers[x].url, hello) for x in where))
        assert any(n.reply.startswith("40{") and json.loads(n.reply[2:])["sid"] == sid for n in newcomers)
        ctl = await Raw.open(s, servers["A"].url)
        await ctl.ws.send_str("42" + json.dumps(["emit", sid, "private", "x"]))
        got = await asyncio.gather(*(_events(n, 3) for n in newcomers))
        seen = {i: (n.reply, g) for i, (n, g) in enumerate(zip(newcomers, got))}
        receivers = [i for i, g in enumerate(got) if any('"private"' in e for e in g)]
        assert len(receivers) == 1, seen
        # every other newcomer holds no session under the victim's id: it was closed (so its
        # client notices), or it never got that id
        for i, (raw, events) in enumerate(zip(newcomers, got)):
            if i not in receivers:
                assert "<CLOSE>" in events or json.loads(raw.reply[2:]).get("sid") != sid, seen
