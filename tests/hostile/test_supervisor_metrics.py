"""Finding 3: a /metrics scrape must never end a worker, however large its metrics are.

Real processes: `siopg serve --workers 2 --metrics` with an app whose dynamic namespaces
accept any name; a hostile client opens namespaces with 700 kB names and 150 more; victims
stay connected while /metrics is scraped. Before the fix the worker answered the scrape in
one datagram, got EMSGSIZE and stopped, taking its sessions with it.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import socketio
from prometheus_client.parser import text_string_to_metric_families

from hostile.supervisor_helpers import (  # noqa: F401
    DYNAMIC_APP,
    http_raw,
    private_database,
    supervisors,
)
from siopg.metrics import MAX_LABEL_BYTES
from siopg.supervisor.sid import worker_of

HUGE = 700_000
SHORT_CHILDREN = 150


async def _open_namespaces(url: str, names: list[str]) -> tuple[int, set[str]]:
    """One raw Engine.IO websocket CONNECTing to every name; (its worker id, names accepted).

    Returns once every CONNECT to a short name got an answer (or after 30 s). The huge ones
    are sent first: their namespaces exist by then, whether or not their CONNECT completes
    (with the Postgres adapter it may not: that is another finding's business).
    """
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    accepted: set[str] = set()
    async with aiohttp.ClientSession() as session:  # noqa: SIM117 - ws_connect needs the session
        async with session.ws_connect(ws_url, max_msg_size=0) as ws:
            opening = await ws.receive_str(timeout=10)
            assert opening.startswith("0"), opening
            wid = worker_of(json.loads(opening[1:])["sid"])
            assert wid is not None
            for name in names:
                await ws.send_str(f"40{name},")
            pending = {n for n in names if len(n) < 100}
            try:
                async with asyncio.timeout(30):
                    while pending:
                        msg = await ws.receive()
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        if msg.data == "2":
                            await ws.send_str("3")
                            continue
                        if msg.data.startswith(("40/", "44/")):
                            name = msg.data[2:].split(",", 1)[0]
                            pending.discard(name)
                            if msg.data.startswith("40/"):
                                accepted.add(name)
            except TimeoutError:
                pass
            await ws.close()
    return wid, accepted


def _scrape(port: int) -> dict[str, object]:
    answer = http_raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", timeout=30)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head[:200]
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def test_a_scrape_of_huge_metrics_ends_no_worker_and_labels_stay_bounded(supervisors, private_database, tmp_path):  # noqa: F811 - fixtures
    app = tmp_path / "dyn_app.py"
    app.write_text(DYNAMIC_APP)
    sv = supervisors(f"{app}:io", 2, "--database-url", private_database, "--metrics")
    sv.wait_serving(60)
    workers_before = sv.ready_workers()

    async def scenario() -> None:
        victims = [socketio.AsyncClient(reconnection=False) for _ in range(6)]
        for v in victims:
            await v.connect(sv.url, transports=["websocket"])
        before = [(v.get_sid(), await v.call("whoami", timeout=10)) for v in victims]
        names = [f"/dyn-a{'x' * HUGE}", f"/dyn-b{'y' * HUGE}"] + [f"/dyn-{i:04d}" for i in range(SHORT_CHILDREN)]
        wid, accepted = await _open_namespaces(sv.url, names)
        assert len({n for n in accepted if len(n) < 100}) == SHORT_CHILDREN, len(accepted)
        assert wid in {info["worker"] for _sid, info in before}, "no victim on the attacked worker"
        loop = asyncio.get_running_loop()
        for _ in range(3):  # every scrape answers, with both workers' samples
            families = await loop.run_in_executor(None, _scrape, sv.port)
            sockets = families["siopg_connected_sockets"].samples  # type: ignore[attr-defined]
            # labelled with the worker ids (as the logs say "worker 1 ready")
            assert {s.labels["worker"] for s in sockets} == {str(w) for w in workers_before}, sockets[:3]
            by_worker: dict[str, set[str]] = {}
            for s in sockets:
                by_worker.setdefault(s.labels["worker"], set()).add(s.labels["namespace"])
            for labels in by_worker.values():
                assert len(labels) <= 100 + 2, len(labels)  # the default limit, "/_N/*" and "other"
                assert max(len(label.encode()) for label in labels) <= MAX_LABEL_BYTES + 2
            await asyncio.sleep(1.1)  # past the shared-collection interval: a fresh one each time
        for v, (sid, info) in zip(victims, before, strict=True):  # every session is still there
            assert v.connected and v.get_sid() == sid
            assert await v.call("whoami", timeout=10) == info
        for v in victims:
            await v.disconnect()

    asyncio.run(scenario())
    assert "died unexpectedly" not in sv.log()
    assert sv.ready_workers() == workers_before
    assert sv.proc.poll() is None
