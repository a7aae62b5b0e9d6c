// Node side of bench/cluster_fanout.py (twin: bench/apps/siopg_cluster_fanout.py):
// socket.io 4.8.4 + @socket.io/postgres-adapter 0.5.0, one cluster member per process.
// Usage: node node_cluster_fanout.mjs PORT   (env SIOPG_BENCH_DSN)
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/postgres-adapter";
import pg from "pg";
import { Fanout } from "./fanout_common.mjs";

const port = Number(process.argv[2] || 3000);
const pool = new pg.Pool({ connectionString: process.env.SIOPG_BENCH_DSN, max: 4 });
await pool.query(`CREATE TABLE IF NOT EXISTS socket_io_attachments (
  id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)`);
pool.on("error", (err) => console.error("Postgres error", err));
const io = new Server({ serveClient: false });
io.adapter(createAdapter(pool));
const fanout = new Fanout();

io.on("progress", fanout.onProgress); // serverSideEmit from the other servers
io.on("connection", (socket) => {
  socket.on("start", (cfg) => fanout.start(() => fanout.runTicks(io, cfg)));
  socket.on("progress", (m) => {
    fanout.onProgress(m);
    io.serverSideEmit("progress", m);
  });
});
io.listen(port);
