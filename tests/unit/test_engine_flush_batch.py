"""One flush callback per loop tick for all of a server's dirty connections."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from siopg.engine import EngineOptions, EngineServer, OutgoingMessage, RequestInfo
from siopg.engine.message import EncodedPacket


class FakeWs:
    def __init__(self, log: list[tuple[str, list[str]]], name: str, fail: bool = False) -> None:
        self.log, self.name, self.fail, self.closing = log, name, fail, False

    def write_packets(self, packets: Sequence[EncodedPacket]) -> int:
        if self.fail:
            raise RuntimeError("writer broke")
        self.log.append((self.name, [p.polling for p in packets]))
        return 0

    def buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closing = True


def _ws_socket(engine: EngineServer, ws: FakeWs):  # type: ignore[no-untyped-def]
    info = RequestInfo(headers={}, query={}, remote_address=None, url="/", secure=False, issued=0)
    sock = engine._new_socket(info, "websocket")
    sock._session.open()
    sock._ws = ws
    return sock


async def test_one_callback_flushes_every_dirty_connection_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = EngineServer(lambda s: None, EngineOptions())
    written: list[tuple[str, list[str]]] = []
    socks = [_ws_socket(engine, FakeWs(written, f"c{i}")) for i in range(3)]
    loop = asyncio.get_running_loop()
    scheduled = []
    real_call_soon = loop.call_soon
    monkeypatch.setattr(loop, "call_soon", lambda cb, *a, **k: scheduled.append(cb) or real_call_soon(cb, *a, **k))
    for sock in reversed(socks):
        sock.send([OutgoingMessage("2a")])
    socks[2].send([OutgoingMessage("2b")])
    assert written == []  # nothing leaves before the end of the tick
    assert len(scheduled) == 1
    await asyncio.sleep(0)
    monkeypatch.undo()
    assert written == [("c2", ["42a", "42b"]), ("c1", ["42a"]), ("c0", ["42a"])]
    socks[0].send([OutgoingMessage("x")])  # a later tick schedules again
    await asyncio.sleep(0)
    assert written[-1] == ("c0", ["4x"])
    for sock in socks:
        sock.close()


async def test_a_failing_connection_does_not_strand_the_others(caplog: pytest.LogCaptureFixture) -> None:
    engine = EngineServer(lambda s: None, EngineOptions())
    written: list[tuple[str, list[str]]] = []
    bad = _ws_socket(engine, FakeWs(written, "bad", fail=True))
    good = _ws_socket(engine, FakeWs(written, "good"))
    bad.send([OutgoingMessage("1")])
    good.send([OutgoingMessage("2")])
    await asyncio.sleep(0)
    assert written == [("good", ["42"])]
    assert "flushing engine connection" in caplog.text
    good.send([OutgoingMessage("3")])
    await asyncio.sleep(0)
    assert written[-1] == ("good", ["43"])


async def test_write_coalescing_merges_frames_queued_within_the_window() -> None:
    engine = EngineServer(lambda s: None, EngineOptions(write_coalesce=0.05))
    written: list[tuple[str, list[str]]] = []
    flushed = asyncio.Event()

    class SignallingWs(FakeWs):
        def write_packets(self, packets: Sequence[EncodedPacket]) -> int:
            flushed.set()
            return super().write_packets(packets)

    a, b = _ws_socket(engine, SignallingWs(written, "a")), _ws_socket(engine, SignallingWs(written, "b"))
    loop = asyncio.get_running_loop()
    start = loop.time()
    a.send([OutgoingMessage("1")])
    for _ in range(5):  # later loop iterations, still inside the window
        await asyncio.sleep(0)
    assert written == []
    a.send([OutgoingMessage("2")])
    b.send([OutgoingMessage("3")])
    await asyncio.wait_for(flushed.wait(), 5)
    assert loop.time() - start >= 0.045  # held for the window (loop timer granularity aside)
    assert written == [("a", ["41", "42"]), ("b", ["43"])]  # one write per connection
    for sock in (a, b):
        sock.close()


def test_write_coalesce_option_reaches_the_engine_and_is_bounded() -> None:
    import siopg

    assert siopg.Server(write_coalesce_ms=5).engine.options.write_coalesce == 0.005
    assert siopg.Server().engine.options.write_coalesce == 0
    with pytest.raises(ValueError, match="write_coalesce"):
        EngineOptions(write_coalesce=-1)
