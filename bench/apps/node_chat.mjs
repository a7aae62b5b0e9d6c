// Node socket.io 4.8.4 side of bench/chat.py (twin: bench/apps/siopg_chat.py): a chat room
// server. Each client names its room in the handshake auth ({room: "r17"}); a "say" event is
// relayed to the rest of the room (socket.to(room).emit). With SIOPG_BENCH_DSN set, a cluster
// member over @socket.io/postgres-adapter 0.5.0 (every room emit is a NOTIFY through Postgres).
// Usage: node node_chat.mjs PORT
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/postgres-adapter";
import pg from "pg";

const port = Number(process.argv[2] || 3000);
const io = new Server({ serveClient: false });
if (process.env.SIOPG_BENCH_DSN) {
  const pool = new pg.Pool({ connectionString: process.env.SIOPG_BENCH_DSN, max: 4 });
  await pool.query(`CREATE TABLE IF NOT EXISTS socket_io_attachments (
    id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)`);
  pool.on("error", (err) => console.error("Postgres error", err));
  io.adapter(createAdapter(pool));
}

io.on("connection", (socket) => {
  const room = String((socket.handshake.auth && socket.handshake.auth.room) || "lobby");
  socket.join(room);
  socket.on("say", (msg) => socket.to(room).emit("msg", msg));
});
io.listen(port);
