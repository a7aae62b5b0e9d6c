// Node socket.io 4.8.4 side of bench/fanout.py; bench/apps/siopg_fanout.py is its twin.
//
// A control client emits "start" {n, window, rate, procs, pad}; the server then
// broadcasts n "tick" {seq, t} events to everyone, then "done". t is the send
// time in CLOCK_MONOTONIC microseconds (shared with the load clients).
//   rate > 0:  paced at `rate` broadcasts per second.
//   otherwise: as fast as the clients take them, keeping at most `window`
//              broadcasts in flight ahead of the slowest load process, from the
//              "progress" {p, d} reports (d = deliveries counted by process p).
// Usage: node node_fanout.mjs PORT
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] || 3000);
const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false });
const delivered = [];
let wake = null;
let running = false;

function nowUs() {
  const [s, ns] = process.hrtime();
  return s * 1e6 + Math.floor(ns / 1000);
}

function waitProgress(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      wake = null;
      resolve(false);
    }, ms);
    wake = () => {
      clearTimeout(timer);
      resolve(true);
    };
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function run(cfg) {
  const n = cfg.n;
  const procs = cfg.procs; // clients per load process
  const pad = cfg.pad ? "x".repeat(cfg.pad) : null;
  let windowOn = cfg.window > 0;
  delivered.length = 0;
  for (let p = 0; p < procs.length; p++) delivered.push(0);
  const minAvg = () => {
    let m = Infinity;
    for (let p = 0; p < procs.length; p++) m = Math.min(m, delivered[p] / procs[p]);
    return m;
  };
  const emit = (seq) => {
    const msg = { seq, t: nowUs() };
    if (pad) msg.pad = pad;
    io.emit("tick", msg);
  };
  const t0 = nowUs();
  let seq = 0;
  while (seq < n) {
    if (cfg.rate > 0) {
      const due = Math.min(n, Math.floor(((nowUs() - t0) * cfg.rate) / 1e6) + 1);
      while (seq < due) emit(seq++);
      const nextUs = t0 + (seq * 1e6) / cfg.rate;
      await sleep(Math.max(0, (nextUs - nowUs()) / 1000));
    } else {
      while (seq < n && (!windowOn || seq - minAvg() < cfg.window)) emit(seq++);
      if (seq < n && !(await waitProgress(5000))) {
        console.error("no progress for 5 s: window off");
        windowOn = false;
      }
    }
  }
  io.emit("done", { n });
}

io.on("connection", (socket) => {
  socket.on("start", (cfg) => {
    if (running) return;
    running = true;
    run(cfg)
      .catch((e) => console.error(e))
      .finally(() => {
        running = false;
      });
  });
  socket.on("progress", (m) => {
    delivered[m.p] = m.d;
    if (wake) {
      const w = wake;
      wake = null;
      w();
    }
  });
});

httpServer.listen(port, "127.0.0.1"); // loopback only
