"""DeadlineQueue: every session's deadline behind one loop timer."""

from __future__ import annotations

import asyncio

from siopg.engine import EngineOptions, EngineServer, RequestInfo
from siopg.engine.deadlines import DeadlineQueue


async def test_deadlines_run_in_time_order_and_cancelled_ones_never() -> None:
    loop = asyncio.get_running_loop()
    queue = DeadlineQueue(loop)
    fired: list[str] = []
    done = loop.create_future()
    now = loop.time()
    queue.add(now + 0.03, lambda: fired.append("c"))
    queue.add(now + 0.01, lambda: fired.append("a"))
    queue.add(now + 0.01, lambda: fired.append("a2"))  # same time: the order they were set
    dropped = queue.add(now + 0.02, lambda: fired.append("never"))
    queue.add(now + 0.04, lambda: done.set_result(None))
    queue.cancel(dropped)
    queue.cancel(dropped)  # twice is harmless
    assert len(queue) == 4
    await asyncio.wait_for(done, 2)
    assert fired == ["a", "a2", "c"]
    assert len(queue) == 0 and queue._timer is None


async def test_cancelling_every_deadline_leaves_no_timer() -> None:
    queue = DeadlineQueue(asyncio.get_running_loop())
    entries = [queue.add(asyncio.get_running_loop().time() + 60 + i, lambda: None) for i in range(200)]
    for entry in entries[:150]:  # most cancelled: the heap is compacted
        queue.cancel(entry)
    assert len(queue) == 50 and len(queue._heap) < 200
    for entry in entries[150:]:
        queue.cancel(entry)
    assert queue._timer is None and queue._heap == []


async def test_a_failing_callback_does_not_strand_the_others_nor_does_a_due_rearm_spin() -> None:
    loop = asyncio.get_running_loop()
    queue = DeadlineQueue(loop)
    runs: list[float] = []
    done = loop.create_future()

    def broken() -> None:
        raise RuntimeError("session broke")

    def rearm_in_the_past() -> None:  # a deadline already due goes to the next timer run
        runs.append(loop.time())
        if len(runs) < 3:
            queue.add(loop.time() - 1, rearm_in_the_past)
        else:
            done.set_result(None)

    queue.add(loop.time(), broken)
    queue.add(loop.time(), rearm_in_the_past)
    await asyncio.wait_for(done, 2)
    assert len(runs) == 3


async def test_sessions_of_one_server_share_one_loop_timer() -> None:
    engine = EngineServer(lambda socket: None, EngineOptions(ping_interval=25_000))
    info = RequestInfo(headers={}, query={"EIO": "4", "transport": "polling"}, remote_address=None,
                       url="/engine.io/", secure=False, issued=0)
    for _ in range(3):
        assert (await engine.handle_http(info, lambda limit: asyncio.sleep(0, b""))).status == 200
    queue = engine._deadlines
    assert queue is not None and len(queue) == 3
    assert all(s._deadlines is queue and s._timer is not None for s in engine.sockets.values())
    await engine.close()
    assert len(queue) == 0 and queue._timer is None
