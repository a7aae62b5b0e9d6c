// siopg dashboard: polls <path>/stats.json every second and updates the page in place.
// No framework, no build step. Text only ever goes in through textContent (namespace names
// come from clients), and the sparklines are drawn by setting SVG point lists.
"use strict";

(function () {
  const body = document.body;
  const statsUrl = body.dataset.statsUrl;
  const interval = Number(body.dataset.interval) || 1000;
  const statusEl = document.getElementById("status");
  const intFormat = new Intl.NumberFormat("en-US");
  const SPARK_W = 120;
  const SPARK_H = 32;

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
    return intFormat.format(value);
  }

  function updateNumbers(doc) {
    for (const el of document.querySelectorAll("[data-stat]")) {
      const key = el.dataset.stat;
      let value = lookup(doc, key);
      if (value === undefined && key.startsWith("engine.by_transport.")) value = 0;
      const text = format(value, el.dataset.format);
      if (el.textContent !== text) el.textContent = text;
    }
  }

  // One sparkline: x is the age of each point (0 = now, right edge; window = left edge),
  // y is scaled to the largest value shown (at least 1, so a flat zero stays at the bottom).
  function drawSpark(svg, ages, values, windowSeconds) {
    const line = svg.querySelector(".line");
    const area = svg.querySelector(".area");
    if (!ages || !values || values.length === 0) {
      line.setAttribute("points", "");
      area.setAttribute("points", "");
      return;
    }
    const max = Math.max(1, ...values);
    const pad = 2;
    const pts = values.map((v, i) => {
      const x = SPARK_W * (1 - Math.min(ages[i], windowSeconds) / windowSeconds);
      const y = SPARK_H - pad - (SPARK_H - 2 * pad) * (v / max);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    if (pts.length === 1) pts.unshift((SPARK_W - 1).toFixed(1) + "," + pts[0].split(",")[1]);
    line.setAttribute("points", pts.join(" "));
    const first = pts[0].split(",")[0];
    const last = pts[pts.length - 1].split(",")[0];
    area.setAttribute("points", first + "," + SPARK_H + " " + pts.join(" ") + " " + last + "," + SPARK_H);
    svg.setAttribute("data-max", String(max));
  }

  function updateSparks(doc) {
    const h = doc.history || {};
    for (const svg of document.querySelectorAll("svg[data-spark]")) {
      drawSpark(svg, h.age, h[svg.dataset.spark], h.window || 60);
    }
  }

  function updateNamespaces(doc) {
    const tbody = document.getElementById("namespaces");
    const rows = [];
    for (const nsp of doc.namespaces || []) {
      const tr = document.createElement("tr");
      const cells = [[nsp.name, ""], [intFormat.format(nsp.sockets), "num"], [intFormat.format(nsp.rooms), "num"]];
      for (const [text, cls] of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
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
      if (!response.ok) throw new Error("HTTP " + response.status);
      const doc = await response.json();
      updateNumbers(doc);
      updateSparks(doc);
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
