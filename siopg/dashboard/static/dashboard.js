// siopg dashboard: polls <path>/stats.json every second and updates the page in place.
// No framework, no build step. Text only ever goes in through textContent (namespace names
// and hosts come from elsewhere), and the charts are drawn by setting SVG point lists.
"use strict";

(function () {
  const body = document.body;
  const statsUrl = body.dataset.statsUrl;
  const interval = Number(body.dataset.interval) || 1000;
  const statusEl = document.getElementById("status");
  const intFormat = new Intl.NumberFormat("en-US");
  const SVG = "http://www.w3.org/2000/svg";
  const SPARK_W = 120;
  const SPARK_H = 32;
  const CHART_W = 600;
  const CHART_H = 120;
  const CAUSE_COLORS = ["#f0883e", "#d2a8ff", "#f778ba", "#e3b341", "#a5d6ff", "#ff7b72", "#7ee787"];

  function lookup(doc, dotted) {
    let value = doc;
    for (const part of dotted.split(".")) {
      if (value === null || value === undefined) return undefined;
      value = value[part];
    }
    return value;
  }

  function format(value, kind) {
    if (value === null || value === undefined) return kind === "percent" ? "–" : "?";
    if (kind === "rate") return value.toFixed(1);
    if (kind === "percent") return Math.round(value * 100) + "%";
    if (kind === "plain") return String(value);
    if (kind === "age") return duration(value);
    return intFormat.format(value);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 120) return Math.round(seconds) + "s";
    if (seconds < 7200) return Math.round(seconds / 60) + "m";
    if (seconds < 172800) return (seconds / 3600).toFixed(1) + "h";
    return (seconds / 86400).toFixed(1) + "d";
  }

  function updateNumbers(doc) {
    for (const el of document.querySelectorAll("[data-stat]")) {
      const key = el.dataset.stat;
      let value = lookup(doc, key);
      if (value === undefined && key.startsWith("engine.by_transport.")) value = 0;
      const text = key.startsWith("log.") && !doc.log ? "–" : format(value, el.dataset.format);
      if (el.textContent !== text) el.textContent = text;
    }
  }

  // x is the age of each point (0 = now, right edge; window = left edge), y is scaled to
  // `max` (at least 1, so a flat zero stays at the bottom).
  function points(ages, values, windowSeconds, width, height, max) {
    const pad = 2;
    return values.map((v, i) => {
      const x = width * (1 - Math.min(ages[i], windowSeconds) / windowSeconds);
      const y = height - pad - (height - 2 * pad) * (v / max);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
  }

  function drawSpark(svg, ages, values, windowSeconds) {
    const line = svg.querySelector(".line");
    const area = svg.querySelector(".area");
    if (!ages || !values || values.length === 0) {
      line.setAttribute("points", "");
      area.setAttribute("points", "");
      return;
    }
    const max = Math.max(1, ...values);
    const pts = points(ages, values, windowSeconds, SPARK_W, SPARK_H, max);
    if (pts.length === 1) pts.unshift((SPARK_W - 1).toFixed(1) + "," + pts[0].split(",")[1]);
    line.setAttribute("points", pts.join(" "));
    const first = pts[0].split(",")[0];
    const last = pts[pts.length - 1].split(",")[0];
    area.setAttribute("points", first + "," + SPARK_H + " " + pts.join(" ") + " " + last + "," + SPARK_H);
  }

  // The x axis spans the history there is (at least a minute, at most the server's window),
  // so a server that just started fills the chart rather than a sliver of it.
  function span(h) {
    const window = h.window || 600;
    return Math.min(window, Math.max(60, ...(h.age || [0])));
  }

  function updateSparks(doc) {
    const h = doc.history || {};
    for (const svg of document.querySelectorAll("svg[data-spark]")) {
      drawSpark(svg, h.age, h[svg.dataset.spark], span(h));
    }
  }

  // Recoveries per second: recovered, failed, and each cause the servers count.
  function updateRecoveryChart(doc) {
    const svg = document.getElementById("recovery-chart");
    const legend = document.getElementById("recovery-legend");
    const h = doc.history || {};
    const series = [["recovered", h.recovered, "#3fb950"], ["failed", h.failed, "#f85149"]];
    Object.keys(h.causes || {}).forEach((cause, i) => {
      series.push([cause, h.causes[cause], CAUSE_COLORS[i % CAUSE_COLORS.length]]);
    });
    const max = Math.max(1, ...series.flatMap(([, values]) => values || []));
    const lines = [];
    const keys = [];
    for (const [name, values, color] of series) {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("class", "series");
      line.setAttribute("stroke", color);
      line.setAttribute("data-series", name);
      if (values && values.length) line.setAttribute("points", points(h.age, values, span(h), CHART_W, CHART_H, max).join(" "));
      lines.push(line);
      const key = document.createElement("span");
      key.style.color = color;
      key.textContent = "● " + name.replace(/_/g, " ");
      keys.push(key);
    }
    svg.replaceChildren(...lines);
    svg.setAttribute("data-max", String(max));
    legend.replaceChildren(...keys);
    const causes = (doc.recovery && doc.recovery.causes) || {};
    const text = Object.keys(causes).map((c) => c.replace(/_/g, " ") + " " + intFormat.format(causes[c])).join(" · ");
    document.getElementById("causes").textContent = text || "none recorded";
  }

  function row(cells, attrs) {
    const tr = document.createElement("tr");
    for (const [key, value] of Object.entries(attrs || {})) tr.setAttribute(key, value);
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    return tr;
  }

  function pairs(obj) {
    return Object.entries(obj || {}).map(([k, v]) => k + " " + intFormat.format(v)).join(", ") || "–";
  }

  function updateServers(doc) {
    const rows = (doc.servers || []).map((s) => row([
      [s.id, ""],
      [s.worker === null || s.worker === undefined ? "–" : String(s.worker), ""],
      [s.host || "–", ""],
      [s.pid ? String(s.pid) : "–", "num"],
      [duration(s.uptime), "num"],
      [intFormat.format(s.sockets), "num"],
      [pairs(s.transports), ""],
      [(s.namespaces || []).map((n) => n.name + " " + intFormat.format(n.sockets)).join(", ") || "–", ""],
      [intFormat.format(s.rooms), "num"],
      [format((s.rates || {}).packets_in || 0, "rate"), "num"],
      [format((s.rates || {}).packets_out || 0, "rate"), "num"],
      [intFormat.format(s.recovery.attempted) + " (" + intFormat.format(s.recovery.succeeded) + " / " +
        intFormat.format(s.recovery.failed) + ")", "num"],
      [s.heartbeat_age === null || s.heartbeat_age === undefined ? "–" : duration(s.heartbeat_age) + " ago", "num"],
      [s.health, "health"],
    ], { "data-health": s.health, "data-server": s.id }));
    document.getElementById("servers").replaceChildren(...rows);
  }

  function updateNamespaces(doc) {
    const rows = (doc.namespaces || []).map((nsp) => row(
      [[nsp.name, ""], [intFormat.format(nsp.sockets), "num"], [intFormat.format(nsp.rooms), "num"]]));
    document.getElementById("namespaces").replaceChildren(...rows);
  }

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  async function poll() {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), Math.max(interval * 3, 3000));
    try {
      const response = await fetch(statsUrl, { cache: "no-store", signal: controller.signal });
      const doc = await response.json();
      if (!response.ok) throw new Error(doc.error || "HTTP " + response.status);
      updateNumbers(doc);
      updateSparks(doc);
      updateServers(doc);
      updateRecoveryChart(doc);
      updateNamespaces(doc);
      setStatus("live", "live · updated " + new Date(doc.time * 1000).toLocaleTimeString());
    } catch (err) {
      setStatus("error", "no data (" + (err && err.message ? err.message : err) + "), retrying");
    } finally {
      clearTimeout(timer);
      setTimeout(poll, interval); // after the answer: a slow server never gets a pile of requests
    }
  }

  poll();
})();
