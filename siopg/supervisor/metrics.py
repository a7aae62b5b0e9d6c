"""`GET /metrics` at the supervisor: every worker's samples, labelled `worker="<worker id>"`
(the id the logs' `worker=` and the dashboard show; a restarted worker gets a new one), its
histograms summed over the workers.

One scrape target per machine, whatever the number of workers: the supervisor asks each
current worker for its exposition over the channel, merges the families, adds its own.
A worker that does not answer within the timeout is left out of that scrape. Replies arrive
in chunks (any size gets through the channel) and are bounded by `max_reply` bytes per worker:
a larger one is left out of the scrape with a warning. Scrapes within `min_interval` of the
last collection share it, so hammering /metrics costs at most one collection per interval.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from siopg._tasks import TaskSet
from siopg.supervisor import channel, httphead

if TYPE_CHECKING:  # pragma: no cover
    from siopg.supervisor.pool import WorkerPool
    from siopg.supervisor.router import Router

log = logging.getLogger("siopg.supervisor")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


#: metric types summed over the workers (bucket by bucket) instead of labelled per worker
SUMMED_TYPES = frozenset(("histogram",))


def merge(expositions: dict[str, bytes]) -> str:
    """Merge Prometheus text expositions, one per `worker` label value, into one.

    Counters and gauges keep one series per worker (label `worker`, the worker id the logs and
    the dashboard show); histograms are summed over the workers, bucket by bucket, into one
    per machine (their quantiles are what matters, and buckets x workers would be many series).
    """
    families: dict[str, Metric] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], Any]] = {}
    for worker, text in expositions.items():
        try:
            parsed = list(text_string_to_metric_families(text.decode("utf-8", "replace")))
        except Exception:  # noqa: BLE001 - a broken exposition loses that worker's samples, not the scrape
            log.warning("worker %s sent unparsable metrics", worker)
            continue
        for fam in parsed:
            merged = families.get(fam.name)
            if merged is None:
                merged = families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            if fam.type in SUMMED_TYPES and merged.type == fam.type:
                summed = sums.setdefault(fam.name, {})
                for sample in fam.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    known = summed.get(key)
                    summed[key] = sample if known is None else known._replace(value=known.value + sample.value)
                continue
            for sample in fam.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, "worker": worker}))
    for name, summed in sums.items():
        families[name].samples.extend(summed.values())

    class _Merged:
        def collect(self) -> list[Metric]:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry).decode()


MAX_REPLY = 64 << 20  # bytes of one worker's exposition the supervisor accepts


class MetricsEndpoint:
    def __init__(
        self,
        pool: WorkerPool,
        router_ref: Callable[[], Router | None],
        timeout: float = 2.0,
        max_reply: int = MAX_REPLY,
        min_interval: float = 1.0,
    ) -> None:
        self.pool = pool
        self.router_ref = router_ref
        self.timeout = timeout
        self.max_reply = max_reply
        self.min_interval = min_interval
        self._ids = itertools.count(1)
        self._waiting: dict[bytes, tuple[asyncio.Future[None], dict[str, bytes], set[str]]] = {}
        self._partial: dict[tuple[bytes, str], list[bytes]] = {}  # chunks received so far
        self._oversized: set[tuple[bytes, str]] = set()
        self._tasks = TaskSet(log)  # scrapes being answered
        self._last: tuple[float, str] | None = None
        self._inflight: asyncio.Future[str] | None = None
        self.oversized = 0

    def on_reply(self, worker_label: str, msg: bytes) -> None:
        """Called by the pool for every METRICS_REPLY / METRICS_MORE chunk."""
        req, _, text = msg[1:].partition(b"\n")
        entry = self._waiting.get(req)
        if entry is None:
            return
        key = (req, worker_label)
        if key in self._oversized:
            if msg[:1] == channel.METRICS_REPLY:
                self._oversized.discard(key)
            return
        parts = self._partial.setdefault(key, [])
        parts.append(text)
        if sum(len(p) for p in parts) > self.max_reply:
            del self._partial[key]
            self.oversized += 1
            log.warning("metrics: worker %s sent more than %d bytes; left out of this scrape",
                        worker_label, self.max_reply)
            if msg[:1] == channel.METRICS_MORE:
                self._oversized.add(key)
            return
        if msg[:1] == channel.METRICS_MORE:
            return
        del self._partial[key]
        done, got, expected = entry
        got[worker_label] = b"".join(parts)
        if expected <= got.keys() and not done.done():
            done.set_result(None)

    def serve(self, conn: socket.socket) -> None:
        self._tasks.spawn(self._serve(conn), "serve a metrics scrape")

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            body = (await self.collect()).encode()
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n").encode()
            await asyncio.wait_for(loop.sock_sendall(conn, head + body), 10)
        except (TimeoutError, OSError):
            pass
        except Exception:
            log.exception("serving /metrics failed")
            try:
                conn.send(httphead.SERVICE_UNAVAILABLE)
            except OSError:
                pass
        finally:
            conn.close()

    async def collect(self) -> str:
        """The merged exposition; shared by every scrape within `min_interval` of the last."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.min_interval:
            return self._last[1]
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_future()
            try:
                text = await self._collect()
            except BaseException as exc:
                if not self._inflight.done():
                    self._inflight.set_exception(exc)
                    self._inflight.exception()  # retrieved: no "never retrieved" warning
                raise
            finally:
                inflight, self._inflight = self._inflight, None
            self._last = (time.monotonic(), text)
            inflight.set_result(text)
            return text
        return await asyncio.shield(self._inflight)

    async def _collect(self) -> str:
        req = str(next(self._ids)).encode()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        got: dict[str, bytes] = {}
        expected: set[str] = set()
        self._waiting[req] = (done, got, expected)
        try:
            for w in self.pool.current_workers():
                if w.end is not None and w.end.send_control(channel.METRICS_REQUEST + req):
                    expected.add(str(w.wid))
            if expected:
                try:
                    await asyncio.wait_for(done, self.timeout)
                except TimeoutError:
                    log.warning("metrics: no answer from worker(s) %s", ", ".join(sorted(expected - got.keys())))
        finally:
            del self._waiting[req]
            for key in [k for k in self._partial if k[0] == req]:
                del self._partial[key]
            self._oversized = {k for k in self._oversized if k[0] != req}
        return merge(got) + self._own()

    def _own(self) -> str:
        pool = self.pool
        router = self.router_ref()
        lines = [
            "# HELP siopg_supervisor_workers_ready Workers ready to take new sessions",
            "# TYPE siopg_supervisor_workers_ready gauge",
            f"siopg_supervisor_workers_ready {pool.ready_count()}",
            "# HELP siopg_supervisor_worker_restarts_total Workers restarted after dying",
            "# TYPE siopg_supervisor_worker_restarts_total counter",
            f"siopg_supervisor_worker_restarts_total {pool.restarts}",
        ]
        if router is not None:
            lines += [
                "# HELP siopg_supervisor_connections_accepted_total TCP connections accepted",
                "# TYPE siopg_supervisor_connections_accepted_total counter",
                f"siopg_supervisor_connections_accepted_total {router.accepted}",
                "# HELP siopg_supervisor_requests_refused_total Requests refused (bad head, timeout)",
                "# TYPE siopg_supervisor_requests_refused_total counter",
                f"siopg_supervisor_requests_refused_total {router.refused}",
                "# HELP siopg_supervisor_pending_heads Connections still sending their request head",
                "# TYPE siopg_supervisor_pending_heads gauge",
                f"siopg_supervisor_pending_heads {router.pending}",
                "# HELP siopg_supervisor_heads_evicted_total Slow heads cut early to stay under --max-pending-heads",
                "# TYPE siopg_supervisor_heads_evicted_total counter",
                f"siopg_supervisor_heads_evicted_total {router.evicted}",
            ]
        lines += [
            "# HELP siopg_supervisor_metrics_replies_oversized_total Worker metrics replies over the size bound",
            "# TYPE siopg_supervisor_metrics_replies_oversized_total counter",
            f"siopg_supervisor_metrics_replies_oversized_total {self.oversized}",
        ]
        return "\n".join(lines) + "\n"
