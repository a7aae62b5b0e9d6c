"""Red team: a takeover asked of a server whose restore of the pid has CLAIMED the session row
but not attached its socket yet must not hear "not here" (decision 3 of issue 7).

Victim on A; newcomer 1 presents the pid on B, which asks A, claims the row, then (test hook
FIX2_AFTER_CLAIM_DELAY) takes a while before attaching. Newcomer 2 presents the pid on C in
that gap: C asks B. Before the fix B answered "not here" and C claimed the row too: both
newcomers held the victim's id and both got its private emits.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from pg.harness import eventually

from .fix2_support import Raw, fix2_procs, schema  # noqa: F401  (fixtures)
from .pgsession_support import session_row


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


@pytest.mark.parametrize("delay", ["0.3", "3"])  # attaches while C waits / only after C gave up
async def test_takeover_in_the_claim_to_attach_gap_never_clones(fix2_procs: Any, pg_dsn: str, schema: str,  # noqa: F811
                                                                delay: str) -> None:
    a = await fix2_procs("A")
    b = await fix2_procs("B", FIX2_AFTER_CLAIM_DELAY=delay)
    c = await fix2_procs("C")
    async with aiohttp.ClientSession() as s:
        victim = await Raw.open(s, a.url)
        reply = json.loads(victim.reply[2:])
        sid, pid = reply["sid"], reply["pid"]
        row = await eventually(lambda: session_row(pg_dsn, schema, sid), timeout=5)
        owner_a = row["owner"]
        hello = "40" + json.dumps({"pid": pid})
        first = asyncio.create_task(Raw.open(s, b.url, hello))

        async def claimed_by_b() -> bool:
            r = await session_row(pg_dsn, schema, sid)
            return r is not None and r["owner"] != owner_a and r["expires_at"] is None

        await eventually(claimed_by_b, timeout=10, interval=0.005)
        second = await Raw.open(s, c.url, hello)  # inside B's claim-to-attach gap
        # keep reading (and answering pings) while B's restore finishes
        second_events = asyncio.create_task(_events(second, float(delay) + 5))
        newcomers = [await first, second]
        ctl = await Raw.open(s, a.url)
        await ctl.ws.send_str("42" + json.dumps(["emit", sid, "private", "x"]))
        got = [await _events(newcomers[0], 3), await second_events]
    seen = {i: (n.reply, g) for i, (n, g) in enumerate(zip(newcomers, got))}
    receivers = [i for i, g in enumerate(got) if any('"private"' in e for e in g)]
    assert len(receivers) == 1, seen
    for i, (raw, events) in enumerate(zip(newcomers, got)):
        if i not in receivers:  # closed (its client notices) or never given the victim's id
            closed = raw.reply.startswith("<") or "<CLOSE>" in events or "<CLOSED>" in events
            assert closed or json.loads(raw.reply[2:]).get("sid") != sid, seen
