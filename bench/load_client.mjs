// Load client for bench/fanout.py and bench/connections.py.
//
// One Node process holding many official socket.io-client 4.8.4 connections
// (websocket only). It talks to the Python harness through JSON lines: commands
// on stdin, events on stdout. The same file drives both servers, so any cost of
// the client is identical for siopg and Node socket.io.
//
// argv[2] is a JSON object:
//   url, clients, proc (index of this process), mode ("fanout" | "idle"),
//   concurrency (connections in flight while ramping up), n (messages expected),
//   progress (report deliveries to the server, for its in-flight window).
// mode "chat" (bench/chat.py) also takes base (global index of this process's first client),
//   total (clients over all processes) and rooms: client g joins room "r" + (g % rooms)
//   through its handshake auth, and on a "chat" command every client emits "say" to its room
//   on a fixed schedule (client g's k-th emit at start + (k + g / total) / rate seconds).
//
// Latency: the server embeds its send time as CLOCK_MONOTONIC microseconds
// ("t"); process.hrtime reads the same clock (libuv uses CLOCK_MONOTONIC, as does
// Python's time.monotonic_ns), so the difference is a true one-machine latency
// without wall-clock skew between processes.

import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const cfg = JSON.parse(process.argv[2]);
const N = cfg.n | 0;
const sockets = [];
const stats = [];
let connected = 0;
let failed = 0;
let disconnected = 0;
let firstConnectUs = 0;
let lastConnectUs = 0;
let rampStartUs = 0;
let closing = false;

// Latency histogram: 10 us buckets up to 1 s, then 1 ms buckets up to 60 s.
const FINE = 100000;
const COARSE = 60000;
const fine = new Uint32Array(FINE);
const coarse = new Uint32Array(COARSE + 1);
let received = 0;
let duplicates = 0;
let outOfOrder = 0;
let firstSendUs = Infinity;
let lastRecvUs = 0;
let doneCount = 0;
let reportPending = false;

function nowUs() {
  const [s, ns] = process.hrtime();
  return s * 1e6 + Math.floor(ns / 1000);
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function record(latUs) {
  if (latUs < 0) latUs = 0;
  const b = Math.floor(latUs / 10);
  if (b < FINE) fine[b]++;
  else coarse[Math.min(COARSE, Math.floor(latUs / 1000))]++;
}

function sparseHist() {
  // [[upper bound in us, count], ...] for non-empty buckets
  const h = [];
  for (let i = 0; i < FINE; i++) if (fine[i]) h.push([(i + 1) * 10, fine[i]]);
  for (let i = 0; i <= COARSE; i++) if (coarse[i]) h.push([(i + 1) * 1000, coarse[i]]);
  return h;
}

// Progress for the server's in-flight window: one report per event-loop turn at
// most, sent by this process's first client.
function scheduleReport() {
  if (reportPending || !cfg.progress) return;
  reportPending = true;
  setImmediate(() => {
    reportPending = false;
    const s = sockets[0];
    if (s && s.connected) s.emit("progress", { p: cfg.proc, d: received });
  });
}

function result() {
  let lost = 0;
  let gotDone = 0;
  for (const st of stats) {
    lost += N - st.unique;
    if (st.done) gotDone++;
  }
  out({
    type: "result",
    proc: cfg.proc,
    clients: cfg.clients,
    received,
    duplicates,
    outOfOrder,
    lost,
    gotDone,
    disconnected,
    firstSendUs: firstSendUs === Infinity ? 0 : firstSendUs,
    lastRecvUs,
    hist: sparseHist(),
  });
}

function resetLatency() {
  fine.fill(0);
  coarse.fill(0);
  received = 0;
  lastRecvUs = 0;
}

// Chat mode: one step = every client emitting to its room at `rate`/s for `seconds`.
const chat = { step: -1, stale: 0, sent: 0, lagMaxUs: 0, lagOver10ms: 0 };

function chatSend(cmd) {
  resetLatency();
  Object.assign(chat, { step: cmd.step, stale: 0, sent: 0, lagMaxUs: 0, lagOver10ms: 0 });
  const n = cfg.clients;
  const perClient = Math.max(1, Math.round(cmd.rate * cmd.seconds));
  const pad = cmd.pad ? "x".repeat(cmd.pad) : undefined;
  const start = nowUs() + 20000;
  const due = (m) => start + ((Math.floor(m / n) + (cfg.base + (m % n)) / cfg.total) * 1e6) / cmd.rate;
  let m = 0;
  const tick = () => {
    const now = nowUs();
    while (m < n * perClient && due(m) <= now) {
      const lag = now - due(m);
      if (lag > chat.lagMaxUs) chat.lagMaxUs = lag;
      if (lag > 10000) chat.lagOver10ms++;
      const s = sockets[m % n];
      if (s.connected) {
        const msg = { r: cmd.step, t: nowUs() };
        if (pad) msg.pad = pad;
        s.emit("say", msg);
        chat.sent++;
      }
      m++;
    }
    if (m < n * perClient) setTimeout(tick, Math.max(0, Math.min(5, (due(m) - nowUs()) / 1000)));
    else out({ type: "sent", proc: cfg.proc, sent: chat.sent, lagMaxUs: chat.lagMaxUs, lagOver10ms: chat.lagOver10ms });
  };
  setTimeout(tick, 20);
}

function chatResult() {
  out({
    type: "result", proc: cfg.proc, clients: cfg.clients, step: chat.step, sent: chat.sent, received,
    stale: chat.stale, disconnected, lagMaxUs: chat.lagMaxUs, lagOver10ms: chat.lagOver10ms, lastRecvUs,
    hist: sparseHist(),
  });
}

function makeClient(i) {
  return new Promise((resolve) => {
    const s = io(cfg.url, {
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: 20000,
      auth: cfg.mode === "chat" ? { room: "r" + ((cfg.base + i) % cfg.rooms) } : undefined,
    });
    const st = { next: 0, unique: 0, seen: cfg.mode === "fanout" ? new Uint8Array((N >> 3) + 1) : null, done: false };
    sockets[i] = s;
    stats[i] = st;
    let settled = false;
    s.on("connect", () => {
      const t = nowUs();
      if (!firstConnectUs) firstConnectUs = t;
      lastConnectUs = t;
      connected++;
      settled = true;
      resolve(true);
    });
    s.on("connect_error", (err) => {
      if (!settled) {
        failed++;
        settled = true;
        if (failed <= 3) out({ type: "log", msg: `connect_error: ${err && err.message}` });
        resolve(false);
      }
    });
    s.on("disconnect", (reason) => {
      if (closing) return;
      disconnected++;
      if (disconnected <= 3) out({ type: "log", msg: `client ${i} disconnected: ${reason}` });
    });
    if (cfg.mode === "chat") {
      s.on("msg", (m) => {
        if (m.r !== chat.step) {
          chat.stale++; // a late delivery from an earlier step
          return;
        }
        const t = nowUs();
        received++;
        lastRecvUs = t;
        record(t - m.t);
      });
    }
    if (cfg.mode === "fanout") {
      s.on("tick", (m) => {
        const t = nowUs();
        const seq = m.seq;
        received++;
        if (m.t < firstSendUs && seq === 0) firstSendUs = m.t;
        lastRecvUs = t;
        record(t - m.t);
        if (seq >= 0 && seq < N) {
          const byte = seq >> 3;
          const bit = 1 << (seq & 7);
          if (st.seen[byte] & bit) duplicates++;
          else {
            st.seen[byte] |= bit;
            st.unique++;
          }
        }
        // arrived after a later one: reordered (a gap alone is counted as loss)
        if (seq < st.next) outOfOrder++;
        else st.next = seq + 1;
        scheduleReport();
      });
      s.on("done", () => {
        st.done = true;
        doneCount++;
        if (doneCount === cfg.clients) result();
      });
    }
  });
}

async function ramp() {
  rampStartUs = nowUs();
  let next = 0;
  const workers = [];
  const conc = Math.max(1, Math.min(cfg.concurrency || 50, cfg.clients));
  for (let w = 0; w < conc; w++) {
    workers.push(
      (async () => {
        while (next < cfg.clients) {
          const i = next++;
          await makeClient(i);
        }
      })(),
    );
  }
  await Promise.all(workers);
  out({
    type: "ready",
    proc: cfg.proc,
    connected,
    failed,
    rampStartUs,
    firstConnectUs,
    lastConnectUs,
  });
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
  if (cmd.cmd === "start") {
    // forwarded to the server by this process's first client
    sockets[0].emit("start", cmd.payload);
  } else if (cmd.cmd === "chat") {
    chatSend(cmd);
  } else if (cmd.cmd === "report") {
    if (cfg.mode === "chat") chatResult();
    else result();
  } else if (cmd.cmd === "exit") {
    shutdown(0);
  }
});
// The harness went away: never linger.
rl.on("close", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));

ramp().catch((e) => {
  out({ type: "log", msg: `ramp failed: ${e && e.stack}` });
  shutdown(1);
});
