// Node side of bench/workers_fanout.py (twin: bench/apps/siopg_workers_app.py):
// socket.io 4.8.4 in cluster mode as its docs describe it: a node:cluster primary owns the
// port and hands each connection to a worker with @socket.io/sticky's setupMaster
// (least-connection, sticky by sid); each worker runs setupWorker(io) and
// @socket.io/postgres-adapter 0.5.0.
// Usage: node node_sticky_cluster.mjs PORT WORKERS
// Env: SIOPG_BENCH_DSN (PostgreSQL URL), SIOPG_BENCH_CHANNEL (NOTIFY channel prefix, unique per
// run so concurrent runs on the same database do not hear each other), SIOPG_BENCH_NODE_POOL
// (pg pool size per worker, default 4).
import cluster from "node:cluster";
import http from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/postgres-adapter";
import { setupMaster, setupWorker } from "@socket.io/sticky";
import pg from "pg";
import { Fanout, nowUs, sleep } from "./fanout_common.mjs";

const port = Number(process.argv[2] || 3000);
const workers = Number(process.argv[3] || 2);

if (cluster.isPrimary) {
  const httpServer = http.createServer();
  setupMaster(httpServer, { loadBalancingMethod: "least-connection" });
  cluster.setupPrimary({ serialization: "advanced" });
  let ready = 0;
  cluster.on("message", (_w, msg) => {
    // listen only once every worker has its adapter: the harness waits for the port
    if (msg && msg.type === "bench:ready" && ++ready === workers) httpServer.listen(port, "127.0.0.1");
  });
  cluster.on("exit", (w, code, signal) => {
    console.error(`worker ${w.process.pid} exited (${code ?? signal})`);
  });
  for (let i = 0; i < workers; i++) cluster.fork();
  const stop = () => {
    for (const id in cluster.workers) cluster.workers[id].process.kill("SIGKILL");
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  await runWorker();
}

async function runWorker() {
  // 4 connections like bench/apps/node_cluster_fanout.mjs (pg's default is 10); the adapter
  // NOTIFYs through any of them, so broadcasts can reach the other workers out of order
  const poolMax = Number(process.env.SIOPG_BENCH_NODE_POOL || 4);
  const pool = new pg.Pool({ connectionString: process.env.SIOPG_BENCH_DSN, max: poolMax });
  pool.on("error", (err) => console.error("Postgres error", err));
  await pool.query(`CREATE TABLE IF NOT EXISTS socket_io_attachments (
    id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)`);
  const httpServer = http.createServer();
  const io = new Server(httpServer, { serveClient: false });
  io.adapter(createAdapter(pool, { channelPrefix: process.env.SIOPG_BENCH_CHANNEL || "socket.io" }));
  setupWorker(io);

  const fanout = new Fanout();
  let welcomeSeq = 0;

  async function run(cfg) {
    const n = cfg.n;
    const rateN = cfg.rate_n || 0;
    fanout.reset(cfg.procs);
    const emit = (seq, ph = 0) => io.emit("tick", { seq, t: nowUs(), ph });
    await fanout.windowed(emit, n, cfg.window); // phase 0: throughput under a window
    if (rateN) {
      const deadline = Date.now() + 30000; // drain phase 0 before the paced phase
      while (fanout.minAvg() < n && Date.now() < deadline) await fanout.waitProgress(1000);
      const t0 = nowUs();
      for (let i = 0; i < rateN; i++) {
        await sleep(Math.max(0, (t0 + (i * 1e6) / cfg.rate - nowUs()) / 1000));
        emit(n + i, 1);
      }
    }
    io.emit("done", { n: n + rateN });
  }

  io.on("progress", fanout.onProgress); // serverSideEmit from the other workers
  io.on("connection", (socket) => {
    socket.emit("welcome", { seq: welcomeSeq++ });
    socket.on("hello", (m, ack) => typeof ack === "function" && ack(m)); // client's first message
    socket.on("start", (cfg) => fanout.start(() => run(cfg)));
    socket.on("progress", (m) => {
      fanout.onProgress(m);
      io.serverSideEmit("progress", m);
    });
  });
  process.send({ type: "bench:ready" });
}
