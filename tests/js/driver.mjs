// A long-running bridge that lets pytest drive the official socket.io-client.
//
// Protocol: one JSON object per line on stdin (a command), one JSON object per line on stdout
// (a reply or a streamed event). Commands carry an "id"; the reply echoes it:
//   {"id":1,"ok":true,"result":...}   or   {"id":1,"ok":false,"error":"..."}
// Streamed events (no id):
//   {"type":"event","client":"c1","via":"on"|"any"|"ackReply"|"life","event":"...","args":[...]}
// Binary values cross the bridge as {"$bin":"<base64>"} in both directions, `undefined` as
// {"$undef":true}; Error objects become {"message":..., "data":...}.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(import.meta.url);
const { io } = require("socket.io-client");
const msgpackParser = require("socket.io-msgpack-parser");

/** @type {Map<string, import("socket.io-client").Socket>} */
const clients = new Map();

function write(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function isBinary(v) {
  return Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

/** JS value -> JSON-safe value for the bridge. */
function toWire(v) {
  if (v === undefined) return { $undef: true };
  if (v === null) return null;
  if (isBinary(v)) {
    const buf = v instanceof ArrayBuffer ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    return { $bin: buf.toString("base64") };
  }
  if (v instanceof Error) return { message: v.message, data: toWire(v.data) };
  if (Array.isArray(v)) return v.map(toWire);
  if (typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = toWire(x);
    return out;
  }
  if (typeof v === "bigint") return Number(v);
  return v;
}

/** Bridge value -> JS value (Buffers for binary). */
function fromWire(v) {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(fromWire);
  const keys = Object.keys(v);
  if (keys.length === 1 && keys[0] === "$bin") return Buffer.from(v.$bin, "base64");
  if (keys.length === 1 && keys[0] === "$undef") return undefined;
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = fromWire(x);
  return out;
}

function stream(client, via, event, args) {
  write({ type: "event", client, via, event, args: toWire(args) });
}

function getClient(name) {
  const s = clients.get(name);
  if (!s) throw new Error(`unknown client ${name}`);
  return s;
}

function state(s) {
  const engine = s.io.engine;
  return {
    id: s.id ?? null,
    connected: s.connected,
    recovered: s.recovered,
    engineId: engine ? engine.id ?? null : null,
    transport: engine && engine.transport ? engine.transport.name : null,
  };
}

/** Resolve on the next "connect" (-> state) or "connect_error" (-> {error}). */
function nextConnectOutcome(s, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no connect/connect_error within ${timeoutMs} ms`));
    }, timeoutMs);
    const onConnect = () => {
      cleanup();
      resolve({ ...state(s), error: null });
    };
    const onError = (err) => {
      cleanup();
      resolve({ ...state(s), error: toWire(err) });
    };
    function cleanup() {
      clearTimeout(timer);
      s.off("connect", onConnect);
      s.off("connect_error", onError);
    }
    s.on("connect", onConnect);
    s.on("connect_error", onError);
  });
}

const ops = {
  async connect(cmd) {
    if (clients.has(cmd.client)) throw new Error(`client ${cmd.client} exists`);
    const opts = { forceNew: true, reconnection: false, timeout: 5000, ...(cmd.opts || {}) };
    if (opts.parser === "msgpack") opts.parser = msgpackParser;
    if (opts.auth) opts.auth = fromWire(opts.auth);
    // "share": open this namespace on another client's Manager (one Engine.IO connection)
    const s = cmd.share
      ? getClient(cmd.share).io.socket(new URL(cmd.url).pathname, { auth: opts.auth })
      : io(cmd.url, { ...opts, autoConnect: false });
    clients.set(cmd.client, s);
    s.on("connect", () => stream(cmd.client, "life", "connect", [state(s)]));
    s.on("connect_error", (err) => stream(cmd.client, "life", "connect_error", [err]));
    s.on("disconnect", (reason, details) =>
      stream(cmd.client, "life", "disconnect", [reason, details ? String(details.description ?? details.message ?? details) : null]),
    );
    s.io.on("open", () => {
      const engine = s.io.engine;
      stream(cmd.client, "life", "open", [engine.transport.name]);
      engine.on("upgrade", (transport) => stream(cmd.client, "life", "upgrade", [transport.name]));
    });
    for (const event of cmd.listen || []) s.on(event, (...args) => stream(cmd.client, "on", event, args));
    s.io.on("reconnect_attempt", (n) => stream(cmd.client, "life", "reconnect_attempt", [n]));
    const outcome = cmd.wait === false ? null : nextConnectOutcome(s, cmd.timeout ?? 5000);
    s.connect();
    return outcome ? await outcome : state(s);
  },

  async reconnect(cmd) {
    const s = getClient(cmd.client);
    const outcome = nextConnectOutcome(s, cmd.timeout ?? 5000);
    s.connect();
    return await outcome;
  },

  async emit(cmd) {
    const s = getClient(cmd.client);
    const args = fromWire(cmd.args || []);
    if (!cmd.ack) {
      s.emit(cmd.event, ...args);
      return null;
    }
    return await new Promise((resolve) => {
      s.timeout(cmd.timeout ?? 2000).emit(cmd.event, ...args, (err, ...resp) => {
        if (err) resolve({ error: err.message, args: null });
        else resolve({ error: null, args: toWire(resp) });
      });
    });
  },

  on(cmd) {
    const s = getClient(cmd.client);
    s.on(cmd.event, (...args) => stream(cmd.client, "on", cmd.event, args));
    return null;
  },

  onAny(cmd) {
    const s = getClient(cmd.client);
    s.onAny((event, ...args) => stream(cmd.client, "any", event, args));
    return null;
  },

  // How this client answers a server emit that asks for an ack:
  // mode "value" -> ack(...value), "echo" -> ack(...received args), "none" -> never answer.
  ackReply(cmd) {
    const s = getClient(cmd.client);
    const value = fromWire(cmd.value || []);
    s.on(cmd.event, (...args) => {
      const cb = typeof args[args.length - 1] === "function" ? args.pop() : null;
      stream(cmd.client, "ackReply", cmd.event, args);
      if (!cb || cmd.mode === "none") return;
      const answer = cmd.mode === "echo" ? args : value;
      if (cmd.delay) setTimeout(() => cb(...answer), cmd.delay);
      else cb(...answer);
    });
    return null;
  },

  closeEngine(cmd) {
    getClient(cmd.client).io.engine.close();
    return null;
  },

  disconnect(cmd) {
    getClient(cmd.client).disconnect();
    return null;
  },

  state(cmd) {
    return state(getClient(cmd.client));
  },

  closeAll() {
    for (const s of clients.values()) {
      s.removeAllListeners();
      s.io.removeAllListeners?.();
      s.disconnect();
      s.io.engine?.close();
    }
    clients.clear();
    return null;
  },

  ping() {
    return "pong";
  },
};

const rl = createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    write({ id: null, ok: false, error: `bad json: ${e.message}` });
    return;
  }
  const fn = ops[cmd.op];
  if (!fn) {
    write({ id: cmd.id, ok: false, error: `unknown op ${cmd.op}` });
    return;
  }
  try {
    const result = await fn(cmd);
    write({ id: cmd.id, ok: true, result: result ?? null });
  } catch (e) {
    write({ id: cmd.id, ok: false, error: String(e && e.message ? e.message : e) });
  }
});
rl.on("close", () => {
  ops.closeAll();
  process.exit(0);
});
