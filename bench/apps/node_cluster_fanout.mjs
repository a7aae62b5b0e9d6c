// Node side of bench/cluster_fanout.py (twin: bench/apps/siopg_cluster_fanout.py):
// socket.io 4.8.4 + @socket.io/postgres-adapter 0.5.0, one cluster member per process.
// Usage: node node_cluster_fanout.mjs PORT   (env SIOPG_BENCH_DSN)
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/postgres-adapter";
import pg from "pg";

const port = Number(process.argv[2] || 3000);
const pool = new pg.Pool({ connectionString: process.env.SIOPG_BENCH_DSN, max: 4 });
await pool.query(`CREATE TABLE IF NOT EXISTS socket_io_attachments (
  id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)`);
pool.on("error", (err) => console.error("Postgres error", err));
const io = new Server({ serveClient: false });
io.adapter(createAdapter(pool));
const delivered = [];
let wake = null;
let running = false;

function nowUs() {
  const [s, ns] = process.hrtime();
  return s * 1e6 + Math.floor(ns / 1000);
}
function onProgress(m) {
  delivered[m.p] = m.d;
  if (wake) {
    const w = wake;
    wake = null;
    w();
  }
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
  const procs = cfg.procs;
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
      await sleep(Math.max(0, (t0 + (seq * 1e6) / cfg.rate - nowUs()) / 1000));
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

io.on("progress", onProgress); // serverSideEmit from the other servers
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
    onProgress(m);
    io.serverSideEmit("progress", m);
  });
});
io.listen(port);
