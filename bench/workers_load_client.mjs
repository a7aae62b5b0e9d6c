// Load client for bench/workers_fanout.py: one Node process holding many official
// socket.io-client 4.8.4 connections, driven by JSON lines (commands on stdin, events on
// stdout), like bench/load_client.mjs but with what the multi-worker benchmark needs:
//   - transport "polling" (the JS default: polling first, then upgrade to websocket) or
//     "websocket" (websocket only); a polling client is "ready" once connected AND upgraded;
//   - the ramp-up: time from the first connection attempt until every client is ready;
//   - the first message: the server emits "welcome" in its connection handler; clients that
//     never get it are counted (the reply to "report"/the result carries noWelcome);
//   - the client's first message: "hello" with an ack, sent at its first connect event;
//     clients whose ack never came are counted (noHelloAck);
//   - ticks {seq, t, ph}: ph 0 = throughput phase, ph 1 = paced (latency) phase, each with its
//     own latency histogram; "ph0" is printed once all phase-0 messages arrived here.
// Reconnection stays on (the JS default), so a client that a server fails retries like a
// real one; connect errors and disconnects are counted.
//
// argv[2] is a JSON object: url, clients, proc, transport, concurrency, n (phase-0 ticks),
// rateN (phase-1 ticks).

import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const cfg = JSON.parse(process.argv[2]);
const N0 = cfg.n | 0;
const N = N0 + (cfg.rateN | 0);
const polling = cfg.transport === "polling";
const sockets = [];
const stats = [];
let ready = 0;
let connectErrors = 0;
let disconnected = 0;
let reconnects = 0;
let rampStartUs = 0;
let lastReadyUs = 0;
let closing = false;

const FINE = 100000; // 10 us buckets up to 1 s
const COARSE = 60000; // then 1 ms buckets up to 60 s
const hists = [0, 1].map(() => ({ fine: new Uint32Array(FINE), coarse: new Uint32Array(COARSE + 1) }));
let received = 0;
let received0 = 0;
let duplicates = 0;
let outOfOrder = 0;
let firstSendUs = Infinity;
let lastRecv0Us = 0;
let doneCount = 0;
let ph0Sent = false;
let reportPending = false;

function nowUs() {
  const [s, ns] = process.hrtime();
  return s * 1e6 + Math.floor(ns / 1000);
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function record(ph, latUs) {
  const h = hists[ph ? 1 : 0];
  if (latUs < 0) latUs = 0;
  const b = Math.floor(latUs / 10);
  if (b < FINE) h.fine[b]++;
  else h.coarse[Math.min(COARSE, Math.floor(latUs / 1000))]++;
}

function sparse(h) {
  const r = [];
  for (let i = 0; i < FINE; i++) if (h.fine[i]) r.push([(i + 1) * 10, h.fine[i]]);
  for (let i = 0; i <= COARSE; i++) if (h.coarse[i]) r.push([(i + 1) * 1000, h.coarse[i]]);
  return r;
}

function scheduleReport() {
  if (reportPending) return;
  reportPending = true;
  setImmediate(() => {
    reportPending = false;
    const s = sockets[0];
    if (s && s.connected) s.emit("progress", { p: cfg.proc, d: received });
  });
}

function result() {
  let lost = 0;
  let noWelcome = 0;
  let noHelloAck = 0;
  let everConnected = 0;
  for (const st of stats) {
    if (!st) continue;
    lost += N - st.unique;
    if (st.connects) everConnected++;
    if (st.connects && !st.welcome) noWelcome++;
    if (st.connects && !st.helloAck) noHelloAck++;
  }
  out({
    type: "result",
    proc: cfg.proc,
    clients: cfg.clients,
    received,
    received0,
    duplicates,
    outOfOrder,
    lost,
    noWelcome,
    noHelloAck,
    everConnected,
    gotDone: doneCount,
    disconnected,
    reconnects,
    connectErrors,
    firstSendUs: firstSendUs === Infinity ? 0 : firstSendUs,
    lastRecv0Us,
    hist0: sparse(hists[0]),
    hist1: sparse(hists[1]),
  });
}

function makeClient(i) {
  return new Promise((resolve) => {
    const s = io(cfg.url, {
      transports: polling ? ["polling", "websocket"] : ["websocket"],
      upgrade: true,
      forceNew: true,
      timeout: 20000,
    });
    const st = { next: 0, unique: 0, seen: new Uint8Array((N >> 3) + 1), connects: 0, welcome: false, helloAck: false, ready: false };
    sockets[i] = s;
    stats[i] = st;
    const markReady = () => {
      if (st.ready) return;
      if (!s.connected || (polling && s.io.engine.transport.name !== "websocket")) return;
      st.ready = true;
      ready++;
      lastReadyUs = nowUs();
      resolve(true);
    };
    s.on("connect", () => {
      if (st.connects++) reconnects++;
      else s.emit("hello", i, () => (st.helloAck = true)); // the client's first message
      const engine = s.io.engine;
      if (polling && !engine.__benchHooked) {
        engine.__benchHooked = true;
        engine.on("upgrade", markReady);
      }
      markReady();
    });
    s.on("connect_error", (err) => {
      connectErrors++;
      if (connectErrors <= 3) out({ type: "log", msg: `client ${i} connect_error: ${err && err.message}` });
    });
    s.on("disconnect", (reason) => {
      if (closing) return;
      disconnected++;
      if (disconnected <= 3) out({ type: "log", msg: `client ${i} disconnected: ${reason}` });
    });
    s.on("welcome", () => {
      st.welcome = true;
    });
    s.on("tick", (m) => {
      const t = nowUs();
      const seq = m.seq;
      received++;
      record(m.ph, t - m.t);
      if (!m.ph) {
        received0++;
        if (seq === 0 && m.t < firstSendUs) firstSendUs = m.t;
        lastRecv0Us = t;
        if (!ph0Sent && received0 >= N0 * cfg.clients) {
          ph0Sent = true;
          out({ type: "ph0", proc: cfg.proc, atUs: t });
        }
      }
      if (seq >= 0 && seq < N) {
        const byte = seq >> 3;
        const bit = 1 << (seq & 7);
        if (st.seen[byte] & bit) duplicates++;
        else {
          st.seen[byte] |= bit;
          st.unique++;
        }
      }
      if (seq < st.next) outOfOrder++;
      else st.next = seq + 1;
      scheduleReport();
    });
    s.on("done", () => {
      // a grace period: with an adapter, "done" can overtake the last ticks of a client
      if (++doneCount === cfg.clients) setTimeout(result, cfg.doneGraceMs ?? 1000);
    });
  });
}

async function ramp() {
  rampStartUs = nowUs();
  let next = 0;
  const conc = Math.max(1, Math.min(cfg.concurrency || 50, cfg.clients));
  const workers = [];
  for (let w = 0; w < conc; w++) {
    workers.push(
      (async () => {
        while (next < cfg.clients) await makeClient(next++);
      })(),
    );
  }
  await Promise.all(workers);
  out({ type: "ready", proc: cfg.proc, ready, connectErrors, rampStartUs, lastReadyUs });
}

function shutdown(code) {
  closing = true;
  for (const s of sockets) if (s) s.disconnect();
  setTimeout(() => process.exit(code), 50);
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    return;
  }
  if (cmd.cmd === "start") sockets[0].emit("start", cmd.payload);
  else if (cmd.cmd === "report") result();
  else if (cmd.cmd === "exit") shutdown(0);
});
rl.on("close", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));

ramp().catch((e) => {
  out({ type: "log", msg: `ramp failed: ${e && e.stack}` });
  shutdown(1);
});
