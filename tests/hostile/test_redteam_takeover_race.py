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

from .redteam_support import Raw, rt_procs, schema  # noqa: F401  (fixtures)


async def _events(raw: Raw, seconds: float) -> list[str]:
    """Everything `raw` receives for `seconds` (stops at a close)."""
    got: list[str] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            data = await raw.packet(left)
        except asyncio.TimeoutError:
            break
        got.append(data)
        if data.startswith("<"):
            break
    return got


async def test_simultaneous_takeovers_on_two_servers_never_clone(rt_procs: Any) -> None:  # noqa: F811
    a, b, c = await rt_procs("A"), await rt_procs("B"), await rt_procs("C")
    async with aiohttp.ClientSession() as s:
        victim = await Raw.open(s, a.url)
        reply = json.loads(victim.reply[2:])
        sid, pid = reply["sid"], reply["pid"]
        await asyncio.sleep(0.5)  # the session row is written (snapshot interval 0.1 s)
        hello = "40" + json.dumps({"pid": pid})
        n1, n2 = await asyncio.gather(Raw.open(s, b.url, hello), Raw.open(s, c.url, hello))
        winners = [n for n in (n1, n2) if n.reply.startswith("40{") and json.loads(n.reply[2:])["sid"] == sid]
        assert winners, (n1.reply, n2.reply)
        ctl = await Raw.open(s, a.url)
        await ctl.ws.send_str("42" + json.dumps(["emit", sid, "private", "x"]))
        got1, got2, got0 = await asyncio.gather(_events(n1, 3), _events(n2, 3), _events(victim, 0.5))
        receivers = [g for g in (got1, got2) if any('"private"' in e for e in g)]
        assert len(receivers) == 1, {"n1": (n1.reply, got1), "n2": (n2.reply, got2), "victim": got0}
        # the other newcomer holds no session under the victim's id: it was closed (so its
        # client notices), or it never got that id
        for raw, got in ((n1, got1), (n2, got2)):
            if got is not receivers[0]:
                assert "<CLOSE>" in got or json.loads(raw.reply[2:]).get("sid") != sid, (raw.reply, got)
