"""Writes grafana-siopg.json next to this file: edit the panels here, then run it.

    python dashboard/build_grafana.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job"'
R = "$__rate_interval"
panels: list[dict[str, Any]] = []


def nid() -> int:
    return len(panels) + 1


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref, "range": True}


def stat(
    title: str, expr: str, x: int, y: int, w: int = 4, h: int = 4, unit: str = "short", desc: str = "",
    decimals: int | None = None,
) -> None:
    p = {"type": "stat", "title": title, "description": desc, "id": nid(), "datasource": DS,
         "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "targets": [target(expr)],
         "fieldConfig": {"defaults": {"unit": unit, "color": {"mode": "thresholds"},
                                       "thresholds": {"mode": "absolute", "steps": [{"color": "blue", "value": None}]}},
                         "overrides": []},
         "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "colorMode": "value", "graphMode": "area", "justifyMode": "auto", "textMode": "auto",
                     "orientation": "auto"}}
    if title == "Recovery rate":
        p["fieldConfig"]["defaults"]["noValue"] = "no attempts"
    if decimals is not None:
        p["fieldConfig"]["defaults"]["decimals"] = decimals
    panels.append(p)


def series(
    title: str, targets: list[tuple[str, str]], x: int, y: int, w: int = 12, h: int = 8, unit: str = "short",
    desc: str = "", stack: bool = False,
) -> None:
    panels.append({"type": "timeseries", "title": title, "description": desc, "id": nid(), "datasource": DS,
                   "gridPos": {"x": x, "y": y, "w": w, "h": h},
                   "targets": [target(e, l, chr(65 + i)) for i, (e, l) in enumerate(targets)],
                   "fieldConfig": {"defaults": {"unit": unit, "min": 0,
                                                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                                           "showPoints": "never",
                                                           "stacking": {"mode": "normal" if stack else "none", "group": "A"}}},
                                   "overrides": []},
                   "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                               "tooltip": {"mode": "multi", "sort": "desc"}}})


def row(title: str, y: int) -> None:
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": False,
                   "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})


row("Now", 0)
stat("Connected sockets", f"sum(siopg_connected_sockets{{{SEL}}})", 0, 1, desc="All namespaces, every worker.")
stat("Engine connections", f"sum(siopg_engine_connections_open{{{SEL}}})", 4, 1, desc="Open Engine.IO connections, every worker.")
stat("Servers reporting", f"count(siopg_engine_connections_open{{{SEL}}})", 8, 1,
     desc="siopg servers (workers) whose metrics reach Prometheus. The cluster's own view is io.server_count() (see the built-in dashboard).")
stat("Packets in /s", f"sum(rate(siopg_packets_received_total{{{SEL}}}[{R}]))", 12, 1, unit="ops", decimals=1)
stat("Broadcasts /s", f"sum(rate(siopg_broadcasts_total{{{SEL}}}[{R}]))", 16, 1, unit="ops", decimals=1)
stat("Recovery rate", f"sum(increase(siopg_recoveries_succeeded_total{{{SEL}}}[$__range])) / (sum(increase(siopg_recoveries_attempted_total{{{SEL}}}[$__range])) > 0)",
     20, 1, unit="percentunit", decimals=1,
     desc="Share of connection state recovery attempts that restored the session, over the selected time range (empty when nobody tried).")
row("Connections", 5)
series("Connected sockets by namespace", [(f"sum by (namespace) (siopg_connected_sockets{{{SEL}}})", "{{namespace}}")], 0, 6, stack=True)
series("Open engine connections by server", [(f"sum by (instance, worker) (siopg_engine_connections_open{{{SEL}}})", "{{instance}} {{worker}}")], 12, 6, stack=True,
       desc="The worker label is set when the siopg supervisor serves /metrics for several workers.")
series("Engine connections opened /s", [(f"sum(rate(siopg_engine_connections_total{{{SEL}}}[{R}]))", "opened")], 0, 14, unit="ops")
series("Supervisor", [(f"sum(siopg_supervisor_workers_ready{{{SEL}}})", "workers ready"),
                      (f"sum(increase(siopg_supervisor_worker_restarts_total{{{SEL}}}[{R}]))", "worker restarts"),
                      (f"sum(rate(siopg_supervisor_connections_accepted_total{{{SEL}}}[{R}]))", "TCP connections accepted /s"),
                      (f"sum(rate(siopg_supervisor_requests_refused_total{{{SEL}}}[{R}]))", "requests refused /s")], 12, 14,
       desc="Only with `siopg serve --workers N`, whose supervisor serves /metrics.")
series("Engine connections by transport", [(f"sum by (transport) (siopg_engine_connections_by_transport{{{SEL}}})", "{{transport}}")], 0, 22, stack=True,
       desc="Open Engine.IO connections by their current transport: many long-lived polling ones usually mean WebSocket is blocked on the way.")
series("Rooms by namespace", [(f"sum by (namespace) (siopg_rooms{{{SEL}}})", "{{namespace}}")], 12, 22, stack=True,
       desc="Rooms made by the application (each socket's own room left out), summed over workers: a room joined on several workers counts once per worker.")
row("Traffic", 30)
series("Packets /s", [(f"sum(rate(siopg_packets_received_total{{{SEL}}}[{R}]))", "received"),
                      (f"sum(rate(siopg_packets_sent_total{{{SEL}}}[{R}]))", "sent")], 0, 31, unit="ops",
       desc="Received: EVENT packets from clients. Sent: packets queued to client connections (a broadcast counts once per recipient).")
series("Broadcasts /s", [(f"sum(rate(siopg_broadcasts_total{{{SEL}}}[{R}]))", "broadcasts")], 12, 31, unit="ops",
       desc="Broadcast emits, each counted once whatever the number of recipients.")
series("Fan-out: packets sent per packet received", [(f"sum(rate(siopg_packets_sent_total{{{SEL}}}[{R}])) / sum(rate(siopg_packets_received_total{{{SEL}}}[{R}]))", "sent per received")], 0, 39,
       desc="Fan-out: packets sent for each packet received.")
row("Connection state recovery", 47)
series("Recovery /s", [(f"sum(rate(siopg_recoveries_attempted_total{{{SEL}}}[{R}]))", "attempted"),
                       (f"sum(rate(siopg_recoveries_succeeded_total{{{SEL}}}[{R}]))", "succeeded")], 0, 48, unit="ops")
series("Sessions persisted /s", [(f"sum(rate(siopg_sessions_persisted_total{{{SEL}}}[{R}]))", "persisted")], 12, 48, unit="ops",
       desc="Sessions kept on disconnect for connection state recovery.")
series("Recovery outcomes /s", [(f"sum(rate(siopg_recoveries_succeeded_total{{{SEL}}}[{R}]))", "recovered"),
                               (f"sum by (cause) (rate(siopg_recovery_failed_total{{{SEL}}}[{R}]))", "failed: {{cause}}")],
       0, 56, unit="ops", stack=True,
       desc="Recoveries that restored the session, and those that failed by cause: unknown_session (no such session), "
            "expired (window passed), offset_pruned, offset_invalid (forged or another namespace's), limit (refused by a "
            "namespace limit), unavailable (database unreachable), error (see the log). The app reads the cause as "
            "socket.recovery_failure.")
series("Missed packets replayed /s", [(f"sum(rate(siopg_packets_replayed_total{{{SEL}}}[{R}]))", "replayed")], 12, 56,
       unit="ops", desc="Packets a recovered socket had missed, sent to it right after its CONNECT.")
row("Connections: why they end, what they carry", 64)
series("Disconnections /s by reason", [(f"sum by (reason) (rate(siopg_disconnections_total{{{SEL}}}[{R}]))", "{{reason}}")],
       0, 65, unit="ops", stack=True,
       desc="Sockets leaving their namespace, by socket.io's reason. Many 'ping timeout' or 'transport error': a network "
            "or a proxy cutting connections; 'transport close': clients went away (or a load balancer's idle timeout).")
series("Bytes /s", [(f"sum(rate(siopg_bytes_received_total{{{SEL}}}[{R}]))", "in"),
                    (f"sum(rate(siopg_bytes_sent_total{{{SEL}}}[{R}]))", "out")], 12, 65, unit="Bps",
       desc="Engine.IO bytes read and written: polling bodies and WebSocket frames (before per-message deflate).")
series("Acks /s", [(f"sum(rate(siopg_acks_answered_total{{{SEL}}}[{R}]))", "answered"),
                   (f"sum(rate(siopg_acks_timed_out_total{{{SEL}}}[{R}]))", "timed out")], 0, 73, unit="ops",
       desc="Acknowledgements clients sent for the server's emits, and those waited for in vain (per client).")
series("Event-loop lag", [(f"histogram_quantile(0.99, sum by (le) (rate(siopg_event_loop_lag_seconds_bucket{{{SEL}}}[{R}])))", "p99"),
                          (f"histogram_quantile(0.5, sum by (le) (rate(siopg_event_loop_lag_seconds_bucket{{{SEL}}}[{R}])))", "p50")],
       12, 73, unit="s",
       desc="How late a callback scheduled every 0.5 s ran: a blocked loop (slow handler, GC pause, CPU starvation) "
            "delays every connection of the process.")
row("Postgres adapter", 81)
series("Commit to delivery", [(f"histogram_quantile(0.99, sum by (le) (rate(siopg_commit_to_delivery_seconds_bucket{{{SEL}}}[{R}])))", "p99"),
                              (f"histogram_quantile(0.5, sum by (le) (rate(siopg_commit_to_delivery_seconds_bucket{{{SEL}}}[{R}])))", "p50")],
       0, 82, unit="s",
       desc="From the publishing transaction to a server handing the packet to its sockets (every server, every log row).")
series("Publish batch size", [(f"histogram_quantile(0.5, sum by (le) (rate(siopg_publish_batch_size_bucket{{{SEL}}}[{R}])))", "p50"),
                              (f"histogram_quantile(0.99, sum by (le) (rate(siopg_publish_batch_size_bucket{{{SEL}}}[{R}])))", "p99"),
                              (f"sum(rate(siopg_publish_batch_size_count{{{SEL}}}[{R}]))", "batches /s")],
       12, 82, desc="Rows per batch committed to the packet log (one NOTIFY and commit per batch).")
series("Publish retry buffer", [(f"sum(siopg_publish_buffer_messages{{{SEL}}})", "messages waiting"),
                                (f"sum(rate(siopg_publish_refused_total{{{SEL}}}[{R}]))", "refused /s"),
                                (f"sum(increase(siopg_pg_listen_reconnects_total{{{SEL}}}[{R}]))", "LISTEN reconnects")],
       0, 90, desc="Messages waiting for Postgres (grows while it is unreachable), emits refused because the buffer was "
                   "full, and reconnections of the log reader's LISTEN connection.")
series("Publish retry buffer bytes", [(f"sum(siopg_publish_buffer_bytes{{{SEL}}})", "bytes waiting")], 12, 90, unit="bytes")
series("Packet log", [(f"max(siopg_pg_log_rows{{{SEL}}})", "rows"),
                      (f"sum(rate(siopg_pg_log_pruned_total{{{SEL}}}[{R}]))", "pruned /s")], 0, 98,
       desc="Rows in the Postgres packet log (id span, as the pruning pass last saw it) and how fast they are pruned.")
series("Packet log oldest row age", [(f"max(siopg_pg_log_oldest_seconds{{{SEL}}})", "oldest")], 12, 98, unit="s",
       desc="Age of the oldest packet kept: about the recovery window plus margins; growing past it means pruning lags.")
for p in panels:  # the fan-out panel sits alone on its row
    if p["title"].startswith("Fan-out"):
        p["gridPos"]["w"] = 24

dash = {
    "title": "siopg",
    "uid": "siopg-overview",
    "description": "siopg (Socket.IO server for Python) from its Prometheus metrics: GET /metrics of io.aiohttp_app(metrics=True), or of the siopg serve supervisor.",
    "tags": ["siopg", "socket.io"],
    "timezone": "browser",
    "editable": True,
    "graphTooltip": 1,
    "refresh": "10s",
    "schemaVersion": 39,
    "version": 1,
    "time": {"from": "now-1h", "to": "now"},
    "timepicker": {},
    "annotations": {"list": []},
    "links": [],
    "templating": {"list": [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "options": [], "regex": ""},
        {"name": "job", "label": "job", "type": "query", "datasource": DS,
         "query": {"query": "label_values(siopg_engine_connections_open, job)", "refId": "job"},
         "definition": "label_values(siopg_engine_connections_open, job)",
         "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "hide": 0, "refresh": 2,
         "options": [], "regex": "", "sort": 1},
    ]},
    "panels": panels,
}
# the same dashboard for import (here) and for the docker compose recipe's provisioned Grafana
for out in (Path(__file__).with_name("grafana-siopg.json"),
            Path(__file__).resolve().parents[1] / "deploy/docker/grafana/provisioning/dashboards/siopg.json"):
    with open(out, "w") as f:
        json.dump(dash, f, indent=2)
        f.write("\n")
print(len(panels), "panels")
