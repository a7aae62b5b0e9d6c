"""siopg.Server behind the supervisor: Postgres adapter across workers, recovery across restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

from sv_helpers import requires_node
from sv_helpers import APPS, NodeClients, check_two_workers_serve

APP = str(APPS / "siopg_app.py") + ":io"

pytestmark = requires_node


class Ticker:
    """Emits "tick" 0, 1, 2... to every client through siopg.Emitter (the packet log)."""

    def __init__(self, dsn: str, interval: float = 0.02) -> None:
        self.dsn = dsn
        self.interval = interval
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.error: BaseException | None = None

    async def _run(self) -> None:
        import siopg

        try:
            async with siopg.Emitter(self.dsn) as emitter:
                while not self._stop.is_set():
                    await emitter.emit("tick", self.sent)
                    self.sent += 1
                    await asyncio.sleep(self.interval)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> "Ticker":
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        if self.error:
            raise self.error
        return self.sent


def test_200_default_clients_exchange_and_broadcast(supervisor_factory):
    sv = supervisor_factory(APP, 2)
    sv.wait_serving()
    clients = NodeClients(sv.url, 200)
    try:
        state = clients.cmd("wait 60")
        assert state["ready"] and state["upgraded"] == 200, state
        assert state["sessionUnknown"] == 0 and not state["connectErrors"], state
        answers = clients.cmd("ping 10")
        assert answers["ok"] == 200 and len(answers["workers"]) == 2, answers
        heard = clients.cmd("shout 1", 60)  # 200 broadcasts, each to 200 clients on both workers
        assert heard["all"], heard
        assert clients.cmd("stats")["disconnects"] == {}
    finally:
        clients.close()


def test_polling_only_clients_get_broadcasts(supervisor_factory):
    sv = supervisor_factory(APP, 2)
    sv.wait_serving()
    clients = NodeClients(sv.url, 50, transports=["polling"])
    try:
        assert clients.cmd("wait 30")["ready"]
        heard = clients.cmd("shout 1", 60)
        assert heard["all"], heard
        stats = clients.cmd("stats")
        assert stats["sessionUnknown"] == 0 and stats["disconnects"] == {}, stats
    finally:
        clients.close()


def test_rolling_restart_recovers_every_client_without_loss(supervisor_factory, sv_dsn):
    sv = supervisor_factory(APP, 2)
    sv.wait_serving()
    clients = NodeClients(sv.url, 60)
    ticker = None
    try:
        assert clients.cmd("wait 30")["ready"]
        ticker = Ticker(sv_dsn).start()
        time.sleep(0.5)
        mark = len(sv.lines)
        sv.signal(signal.SIGHUP)
        sv.wait_log(r"rolling restart done", 40, start=mark)
        time.sleep(0.5)
        sent = ticker.stop()
        ticker = None
        state = clients.cmd("wait 30")
        assert state["ready"], state
        time.sleep(1.0)
        got = clients.cmd("ticks %d" % sent)
        stats = clients.cmd("stats")
        assert stats["reconnects"] == 60, stats  # every client was on a restarted worker
        assert stats["recovered"] == 60, stats
        assert got["complete"] == 60 and got["missingTotal"] == 0, got
        assert got["duplicates"] == 0 and got["outOfOrder"] == 0, got
        assert stats["sessionUnknown"] == 0, stats
        answers = clients.cmd("ping 10")
        assert sorted(answers["workers"]) == ["3", "4"], answers  # only the new workers serve
        # capacity never dropped: each new worker was ready before its old one drained
        log = sv.log()
        assert log.index("worker 3 ready") < log.index("worker 1 exited")
        assert log.index("worker 4 ready") < log.index("worker 2 exited")
    finally:
        if ticker:
            ticker.stop()
        clients.close()


def test_kill_9_under_load_clients_come_back_and_recover(supervisor_factory, sv_dsn):
    sv = supervisor_factory(APP, 2)
    sv.wait_serving()
    clients = NodeClients(sv.url, 40)
    ticker = None
    try:
        assert clients.cmd("wait 30")["ready"]
        before = clients.cmd("ping 10")
        ticker = Ticker(sv_dsn).start()
        time.sleep(0.5)
        os.kill(sv.ready_workers()[1], signal.SIGKILL)
        sv.wait_log(r"worker 3 ready", 20)
        state = clients.cmd("wait 30")
        assert state["ready"], state
        time.sleep(0.5)
        sent = ticker.stop()
        ticker = None
        time.sleep(1.0)
        stats = clients.cmd("stats")
        got = clients.cmd("ticks %d" % sent)
        assert stats["reconnects"] == before["workers"]["1"], stats
        assert clients.cmd("ping 10")["ok"] == 40
        assert got["duplicates"] == 0 and got["outOfOrder"] == 0, got
        # the clients of the killed worker recovered on the survivor: nothing lost, nothing twice
        assert stats["recovered"] == stats["reconnects"], stats
        assert got["complete"] == 40 and got["missingTotal"] == 0, got
    finally:
        if ticker:
            ticker.stop()
        clients.close()


def test_embedded_postgres_from_a_fresh_directory(tmp_path):
    """No --database-url and 2 workers: the supervisor starts and migrates its own PostgreSQL."""
    from sv_helpers import Supervisor

    data = tmp_path / "fresh"
    sv = Supervisor(APP, 2, "--data-dir", str(data), env={"DATABASE_URL": "", "SIOPG_DATABASE_URL": ""})
    try:
        sv.wait_serving(90)
        assert (data / "pg" / "PG_VERSION").exists()
        assert "applied migrations 1" in sv.log()
        check_two_workers_serve(sv.url)
    finally:
        assert sv.stop(30) == 0
    assert not list(data.glob("siopg-*.pid"))


def test_metrics_merge_every_worker(supervisor_factory):
    from prometheus_client.parser import text_string_to_metric_families

    from sv_helpers import http_raw

    sv = supervisor_factory(APP, 2, "--metrics")
    sv.wait_serving()
    clients = NodeClients(sv.url, 10)
    try:
        assert clients.cmd("wait 30")["ready"]
        answer = http_raw(sv.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 ")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        sockets = families["siopg_connected_sockets"].samples
        assert {s.labels["worker"] for s in sockets} == {"1", "2"}  # worker ids, as in the logs
        assert sum(s.value for s in sockets) == 10
        assert families["siopg_supervisor_workers_ready"].samples[0].value == 2
    finally:
        clients.close()
