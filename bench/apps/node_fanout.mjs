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
import { Fanout } from "./fanout_common.mjs";

const port = Number(process.argv[2] || 3000);
const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false });
const fanout = new Fanout();

io.on("connection", (socket) => {
  socket.on("start", (cfg) => fanout.start(() => fanout.runTicks(io, cfg)));
  socket.on("progress", fanout.onProgress);
});

httpServer.listen(port, "127.0.0.1"); // loopback only
