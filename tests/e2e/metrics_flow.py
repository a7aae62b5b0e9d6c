"""Real traffic for the /metrics tests, from hand-written clients (e2e/rawclient.py): a
recovery, a forged offset, an unknown pid, an expired session, a ping timeout, acks and a
broadcast; then the scrape, parsed. Shared by the one-process and the `--workers 2` tests."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from e2e.rawclient import RawClient

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_ids = itertools.count(1)


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url + "/metrics") as resp:
        assert resp.status == 200, resp.status
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (over workers, say)."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= lbls)


async def scrape_until(
    http: aiohttp.ClientSession, url: str, ready: Callable[[Samples], bool], timeout: float = 20.0
) -> Samples:
    """Scrape until `ready(samples)` (scrapes are cached for 1 s by the server: polled)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(http, url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.3)


async def call(raw: RawClient, *args: Any, answer: bool = True) -> Any:
    """Emit `args` with an ack id and return the server's ack; a server emit asking for an ack
    meanwhile is answered ("ok") when `answer`, ignored otherwise."""
    ack_id = next(_ids)
    await raw.ws.send_str(f"42{ack_id}" + json.dumps(list(args)))
    while True:
        packet = await raw.recv_packet()
        head, _, body = packet.partition("[")
        if head == f"43{ack_id}":
            return json.loads("[" + body)[0]
        if head.startswith("42") and head[2:].isdigit() and answer:
            await raw.ws.send_str(f"43{head[2:]}" + json.dumps(["ok"]))


async def open_client(http: aiohttp.ClientSession, url: str, auth: dict[str, Any] | None = None) -> tuple[RawClient, dict[str, Any]]:
    raw, _, reply = await RawClient.open_with_reply(http, url, auth)
    return raw, reply


async def exercise(http: aiohttp.ClientSession, url: str, window: float) -> dict[str, Any]:
    """Drive every path the new metrics count; returns what the server app saw
    (`socket.recovery_failure` of each reconnection, through the app's "whoami")."""
    seen: dict[str, Any] = {}
    silent, _ = await open_client(http, url)  # never answers a ping: "ping timeout" in ~3 s
    victim, reply = await open_client(http, url)
    pid, sid = reply["pid"], reply["sid"]
    assert (await call(victim, "ask", "q", [1], 3000)) == {"ok": "ok"}  # an ack answered
    assert (await call(victim, "ask", "q", [2], 100, answer=False)) == {"error": "timeout"}  # one timed out
    assert await call(victim, "everyone", "news", ["hello"]) is True  # a broadcast
    await victim.ws.close()  # "transport close": the session is kept
    for name, auth in (("forged", {"pid": pid, "offset": "987654321"}), ("unknown", {"pid": "no-such-pid"})):
        raw, reply = await open_client(http, url, auth)
        assert reply["sid"] != sid
        seen[name] = (await call(raw, "whoami"))["recovery_failure"]
        await raw.ws.close()
    back, reply = await open_client(http, url, {"pid": pid})  # the forged attempt did not burn it
    assert reply["sid"] == sid, reply
    me = await call(back, "whoami")
    seen["recovered"] = (me["recovered"], me["recovery_failure"])
    await back.ws.close()
    await asyncio.sleep(window + 1.0)  # the window passes (what is tested: no event to await)
    late, reply = await open_client(http, url, {"pid": pid})
    assert reply["sid"] != sid
    seen["expired"] = (await call(late, "whoami"))["recovery_failure"]
    await late.ws.close()
    await silent.ws.close()
    return seen


def check_samples(before: Samples, after: Samples, version: str) -> None:
    """What `exercise` must have left in the metrics (summed over workers)."""
    assert total(after, "siopg_build_info", version=version) >= 1
    assert total(after, "siopg_bytes_sent_total") > total(before, "siopg_bytes_sent_total")
    assert total(after, "siopg_bytes_received_total") > total(before, "siopg_bytes_received_total")
    for cause in ("offset_invalid", "unknown_session", "expired"):
        assert total(after, "siopg_recovery_failed_total", cause=cause) >= 1, cause
    assert total(after, "siopg_recoveries_succeeded_total") >= 1
    assert total(after, "siopg_disconnections_total", reason="transport close") >= 4
    assert total(after, "siopg_disconnections_total", reason="ping timeout") >= 1
    assert total(after, "siopg_acks_answered_total") >= 1 and total(after, "siopg_acks_timed_out_total") >= 1
    assert total(after, "siopg_event_loop_lag_seconds_count") >= 1


def done(samples: Samples) -> bool:
    """The ping timeout (the slowest thing `exercise` causes) has been seen."""
    return total(samples, "siopg_disconnections_total", reason="ping timeout") >= 1
