// Drives N official socket.io-client 4.x clients for the supervisor tests.
// usage: node clients.js URL N '{"transports":["polling","websocket"]}'
// Reads commands on stdin, one per line, answers one JSON line per command on stdout:
//   wait <seconds>   wait until every client is connected (and upgraded when websocket is allowed)
//   ping <seconds>   every client calls "whoami" with an ack; answers {ok, failed, workers}
//   stats            counters so far
//   ticks <n>        which of the "tick" events 0..n-1 each client received
//   shout [k]        every client broadcasts once; waits until every client heard them all
//   loop <seconds>   every client calls "whoami" back to back; answers the number of acks
//   exit             close every client and exit
"use strict";
const path = require("path");
const readline = require("readline");
const { io } = require(path.join(process.env.SIOPG_NODE_MODULES || "/work/main/node_modules", "socket.io-client"));

const [url, nArg, optsArg] = process.argv.slice(2);
const n = parseInt(nArg, 10);
const opts = Object.assign({ transports: ["polling", "websocket"] }, JSON.parse(optsArg || "{}"));
const wantUpgrade = opts.transports.includes("websocket") && opts.transports[0] === "polling";

const stats = {
  connects: 0, reconnects: 0, recovered: 0, upgrades: 0, connectErrors: [], disconnects: {},
  engineErrors: [], sessionUnknown: 0, events: 0,
};
const clients = [];

function noteEngineError(err) {
  const ctx = err && err.context;
  const text = ctx && typeof ctx.responseText === "string" ? ctx.responseText : "";
  const msg = `${err && err.message} ${err && err.description} ${text}`;
  if (msg.includes("Session ID unknown")) stats.sessionUnknown++;
  if (stats.engineErrors.length < 20) stats.engineErrors.push(msg.slice(0, 200));
}

for (let i = 0; i < n; i++) {
  const socket = io(url, Object.assign({ forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 1000 }, opts));
  const c = { socket, upgraded: false, everConnected: false, ticks: [], shouts: 0, history: [] };
  clients.push(c);
  const watchEngine = () => {
    const engine = socket.io.engine;
    if (!engine || engine.__watched) return;
    engine.__watched = true;
    engine.on("upgrade", () => { c.upgraded = true; stats.upgrades++; });
    engine.on("error", noteEngineError);
    engine.on("upgradeError", noteEngineError);
  };
  socket.io.on("open", watchEngine);
  socket.on("connect", () => {
    watchEngine();
    stats.connects++;
    if (c.everConnected) stats.reconnects++;
    if (socket.recovered) stats.recovered++;
    c.everConnected = true;
    c.history.push(["connect", socket.recovered, Date.now(), socket.io.engine.id]);
    c.upgraded = socket.io.engine.transport.name === "websocket";
  });
  socket.on("connect_error", (err) => {
    if (stats.connectErrors.length < 20) stats.connectErrors.push(String(err && err.message));
    noteEngineError(err);
  });
  socket.on("disconnect", (reason) => {
    stats.disconnects[reason] = (stats.disconnects[reason] || 0) + 1;
    c.history.push(["disconnect", reason, Date.now()]);
    c.upgraded = false;
  });
  socket.onAny(() => { stats.events++; });
  socket.on("tick", (n) => { c.ticks.push(n); c.history.push(["tick", n, Date.now()]); });
  socket.on("shout", () => { c.shouts++; });
}

function ready() {
  return clients.every((c) => c.socket.connected && (!wantUpgrade || c.upgraded));
}

function snapshot() {
  return Object.assign({}, stats, {
    connected: clients.filter((c) => c.socket.connected).length,
    upgraded: clients.filter((c) => c.upgraded).length,
  });
}

async function wait(seconds) {
  const end = Date.now() + seconds * 1000;
  while (!ready() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  return Object.assign({ ready: ready() }, snapshot());
}

async function ping(seconds) {
  const workers = {};
  let ok = 0, failed = 0;
  await Promise.all(clients.map(async (c, i) => {
    try {
      const answer = await c.socket.timeout(seconds * 1000).emitWithAck("whoami", i);
      ok++;
      const key = answer.node ? `${answer.node}-${answer.worker}` : answer.worker;
      workers[key] = (workers[key] || 0) + 1;
    } catch (e) {
      failed++;
    }
  }));
  return { ok, failed, workers };
}

// Which of the ticks 0..n-1 (emitted by the test through siopg.Emitter) each client got.
function ticks(n) {
  let complete = 0, missingTotal = 0, duplicates = 0, outOfOrder = 0;
  const sampleMissing = [];
  const sampleHistory = [];
  for (const c of clients) {
    const seen = new Set();
    let last = -1;
    for (const t of c.ticks) {
      if (seen.has(t)) duplicates++;
      if (t < last) outOfOrder++;
      last = t;
      seen.add(t);
    }
    let missing = 0;
    for (let i = 0; i < n; i++) if (!seen.has(i)) { missing++; if (sampleMissing.length < 10) sampleMissing.push(i); }
    if (!missing) complete++;
    else if (sampleHistory.length < 2) {
      // the client's story around the first gap, for the failure message
      const first = [...Array(n).keys()].find((i) => !seen.has(i));
      const at = c.history.findIndex((h) => h[0] === "tick" && h[1] > first);
      sampleHistory.push(c.history.slice(Math.max(0, at - 6), at + 3));
    }
    missingTotal += missing;
  }
  return { complete, missingTotal, duplicates, outOfOrder, sampleMissing, sampleHistory };
}

async function shouts(expected, seconds) {
  const end = Date.now() + seconds * 1000;
  const done = () => clients.every((c) => c.shouts >= expected);
  while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return { all: done(), counts: [...new Set(clients.map((c) => c.shouts))] };
}

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on("line", (line) => {
  queue = queue.then(async () => {
    const [cmd, arg] = line.trim().split(/\s+/);
    let out;
    if (cmd === "wait") out = await wait(parseFloat(arg || "10"));
    else if (cmd === "ping") out = await ping(parseFloat(arg || "5"));
    else if (cmd === "stats") out = snapshot();
    else if (cmd === "ticks") out = ticks(parseInt(arg, 10));
    else if (cmd === "loop") {
      // every client calls "whoami" back to back for `arg` seconds: request round trips
      const end = Date.now() + parseFloat(arg) * 1000;
      let acks = 0, failed = 0;
      await Promise.all(clients.map(async (c) => {
        while (Date.now() < end) {
          try { await c.socket.timeout(5000).emitWithAck("whoami", 0); acks++; } catch (e) { failed++; }
        }
      }));
      out = { acks, failed, seconds: parseFloat(arg) };
    }
    else if (cmd === "shout") {
      // every client shouts once; each must then hear every shout (broadcast across workers)
      await Promise.all(clients.map((c, i) => c.socket.timeout(10000).emitWithAck("shout", i).catch(() => null)));
      out = await shouts(clients.length * parseInt(arg || "1", 10), 20);
    }
    else if (cmd === "exit") {
      clients.forEach((c) => c.socket.close());
      process.stdout.write(JSON.stringify(snapshot()) + "\n", () => process.exit(0));
      return;
    } else out = { error: `unknown command ${cmd}` };
    process.stdout.write(JSON.stringify(out) + "\n");
  });
});
rl.on("close", () => { clients.forEach((c) => c.socket.close()); setTimeout(() => process.exit(0), 100); });
