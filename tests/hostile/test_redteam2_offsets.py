"""Red team 2: forged offsets presented with a valid pid (negative, non-numeric, over bigint,
in the future, a number of another's packet older than the session) never hand over more
than the session may see, never crash the server, and never use the session up: the real
client still recovers it afterwards, with exactly the packets it missed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from .redteam_support import Raw, rt_procs, schema  # noqa: F401  (fixtures)


async def test_forged_offsets_keep_the_session(rt_procs: Any) -> None:  # noqa: F811
    a, b = await rt_procs("A"), await rt_procs("B")
    async with aiohttp.ClientSession() as s:
        talker = await Raw.open(s, a.url)
        await talker.ws.send_str('42["emit","r","before",0]')  # older than the victim's session
        await asyncio.sleep(0.3)
        victim = await Raw.open(s, a.url)
        sid, pid = (json.loads(victim.reply[2:])[k] for k in ("sid", "pid"))
        assert await victim.call('["join","r"]') == [True]
        await talker.ws.send_str('42["emit","r","seen",1]')
        seen = await victim.packet()
        assert seen.startswith('42["seen",1,'), seen
        offset = json.loads(seen[2:])[-1]
        await asyncio.sleep(0.3)
        await victim.ws.close()
        await asyncio.sleep(0.3)
        await talker.ws.send_str('42["emit","r","missed",2]')
        assert await talker.call('["whereami"]') == ["A"]
        forged = ["-1", "abc", "1" * 25, "9223372036854775807", "0", " 1", 5, None]
        for bad in forged:
            attacker = await Raw.open(s, b.url, "40" + json.dumps({"pid": pid, "offset": bad}))
            reply = attacker.reply
            assert reply.startswith("40{") or reply == "<CLOSE>", reply
            if reply.startswith("40{"):
                got = json.loads(reply[2:])
                if got["sid"] == sid:  # "0"/None: older than the session, clamped to its start
                    assert bad in ("0", None, 5), (bad, reply)
                    events = []
                    try:
                        while True:
                            events.append(await attacker.packet(1.5))
                    except TimeoutError:
                        pass
                    # never a packet from before the session began
                    assert all('"before"' not in e for e in events), events
                    # the session moved to the attacker (it holds the pid): take it back
                    await attacker.ws.close()
                    await asyncio.sleep(0.5)
                else:
                    await attacker.ws.close()
        back = await Raw.open(s, a.url, "40" + json.dumps({"pid": pid, "offset": offset}))
        assert json.loads(back.reply[2:])["sid"] == sid, back.reply
        got = await back.packet()
        assert got.startswith('42["missed",2,'), got
        assert await back.call('["whereami"]') == ["A"]
        assert not any('"before"' in e or '"seen"' in e for e in back.events), back.events
