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
with open(Path(__file__).with_name("grafana-siopg.json"), "w") as f:
    json.dump(dash, f, indent=2)
    f.write("\n")
print(len(panels), "panels")
