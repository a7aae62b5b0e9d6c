"""Values the cluster codec cannot carry never cost a socket its session or its listing.

A client's value that msgpack cannot carry (an integer over 64 bits from JSON; a msgpack
Date, i.e. a datetime) stored by the app in `socket.data` used to make the session
unwritable: the snapshot and the persist at disconnect were skipped (an error reported) and
the client got a fresh session on its first blip. The session is now written with None in
place of just those values (codec.pack_state, warned once per socket), and fetch_sockets
lists the socket with None there too (test_redteam2_describe.py covers handshake.auth).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from .redteam_support import Raw, rt_procs, schema  # noqa: F401  (fixtures)

HUGE = "9" * 30


async def test_unpackable_data_keeps_the_session_with_none_in_its_place(rt_procs: Any) -> None:  # noqa: F811
    a, b = await rt_procs("A"), await rt_procs("B")
    async with aiohttp.ClientSession() as s:
        c = await Raw.open(s, a.url)
        sid, pid = (json.loads(c.reply[2:])[k] for k in ("sid", "pid"))
        assert await c.call(f'["setdata",{{"n":{HUGE},"keep":"me"}}]') == [True]
        assert await c.call('["join","room-x"]') == [True]
        other = await Raw.open(s, b.url)
        assert sid in (await other.call('["fetch"]'))[0]["ids"]  # listed elsewhere
        await c.ws.close()  # a blip: the session is persisted with its data
        await asyncio.sleep(0.5)
        back = await Raw.open(s, b.url, "40" + json.dumps({"pid": pid}))
        assert json.loads(back.reply[2:])["sid"] == sid, back.reply  # recovered, not a fresh session
        await other.ws.send_str('42["emit","room-x","hello",1]')  # its room came back with it
        assert (await back.packet()).startswith('42["hello",1'), back.events
    assert "saved with None" in a.logs() and "not saved" not in a.logs()


def test_carryable_replaces_only_what_the_codec_refuses() -> None:
    import datetime

    from siopg.adapter.cluster import carryable
    from siopg.adapter.postgres import codec

    when = datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC)
    value = {"ok": [1, "x", {"big": 10**30, "when": when}], "n": 2**63, when: "key"}
    fixed, replaced = carryable(value, codec.pack)
    assert fixed == {"ok": [1, "x", {"big": None, "when": None}], "n": 2**63}
    assert sorted(replaced) == sorted(["ok[2].big", "ok[2].when", str(when)])  # 2**63 fits (uint64)
    packed, paths = codec.pack_state(value)
    assert codec.unpack(packed) == fixed and paths == replaced
    assert codec.pack_state({"fine": 1}) == (codec.pack({"fine": 1}), [])
