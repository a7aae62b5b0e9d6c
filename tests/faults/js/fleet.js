// N official socket.io-client 4.x clients in one Node process, for the fault-injection suite.
// usage: node fleet.js URL N '{"transports":["websocket"], "pollingEvery": 5}'
// Every client records, in arrival order, each "tick" (producer, n) with the offset the server
// attached (what the client presents to recover), and its connection history. Commands on stdin, one JSON answer line each on stdout:
//   wait <seconds>   until every client is connected; answers {ready, connected}
//   stats            {connected, connects, recovered, fresh}
//   report           every client's record (then forgets nothing: report is idempotent)
//   exit             close every client and exit
"use strict";
const path = require("path");
const readline = require("readline");
const { io } = require(path.join(process.env.SIOPG_NODE_MODULES || "/work/main/node_modules", "socket.io-client"));

const [url, nArg, optsArg] = process.argv.slice(2);
const n = parseInt(nArg, 10);
const opts = JSON.parse(optsArg || "{}");
const pollingEvery = opts.pollingEvery || 0; // every k-th client uses long-polling only
delete opts.pollingEvery;
const t0 = Date.now();
const clients = [];

for (let i = 0; i < n; i++) {
  const transports = pollingEvery && i % pollingEvery === 0 ? ["polling"] : ["websocket"];
  const socket = io(url, Object.assign({
    forceNew: true, transports, reconnectionDelay: 200, reconnectionDelayMax: 2000, timeout: 10000,
  }, opts));
  const c = { socket, transport: transports[0], ticks: [], history: [] };
  clients.push(c);
  socket.on("connect", () => {
    c.history.push(["connect", Date.now() - t0, socket.id, socket.recovered]);
  });
  socket.on("disconnect", (reason) => { c.history.push(["disconnect", Date.now() - t0, String(reason)]); });
  socket.on("connect_error", (err) => {
    c.history.push(["connect_error", Date.now() - t0, String(err && err.message).slice(0, 120)]);
  });
  // with recovery on, the server appends the packet's offset as the last argument
  socket.on("tick", (producer, seq, off) => { c.ticks.push([producer, seq, off === undefined ? null : off]); });
}

async function wait(seconds) {
  const end = Date.now() + seconds * 1000;
  const ready = () => clients.every((c) => c.socket.connected);
  while (!ready() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  return { ready: ready(), connected: clients.filter((c) => c.socket.connected).length };
}

function stats() {
  let connects = 0, recovered = 0, fresh = 0;
  for (const c of clients) {
    const cs = c.history.filter((h) => h[0] === "connect");
    connects += cs.length;
    for (const h of cs.slice(1)) { if (h[3]) recovered++; else fresh++; }
  }
  return { connected: clients.filter((c) => c.socket.connected).length, connects, recovered, fresh,
           ticks: clients.reduce((a, c) => a + c.ticks.length, 0) };
}

function report() {
  return { clients: clients.map((c) => ({ transport: c.transport, history: c.history, ticks: c.ticks })) };
}

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on("line", (line) => {
  queue = queue.then(async () => {
    const [cmd, arg] = line.trim().split(/\s+/);
    let out;
    if (cmd === "wait") out = await wait(parseFloat(arg || "10"));
    else if (cmd === "stats") out = stats();
    else if (cmd === "report") out = report();
    else if (cmd === "exit") {
      for (const c of clients) c.socket.close();
      process.stdout.write(JSON.stringify({ bye: true }) + "\n", () => process.exit(0));
      return;
    } else out = { error: `unknown command ${cmd}` };
    process.stdout.write(JSON.stringify(out) + "\n");
  });
});
rl.on("close", () => process.exit(0));
