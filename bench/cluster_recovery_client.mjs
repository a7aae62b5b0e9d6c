// Recovery timer for bench/cluster_log.py: one official socket.io-client 4.8.4.
// argv: url, n. stdin commands (one per line): "drop" cuts the connection (engine close),
// "reconnect" reconnects and times until n "ev" events arrived (measured here, in the client).
import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const [url, nStr] = process.argv.slice(2);
const n = Number(nStr);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const s = io(url, { transports: ["websocket"], reconnection: false, forceNew: true, auth: { rooms: ["room"] } });
let t0 = 0;
let count = 0;
let ordered = true;
let last = -1;
s.on("connect", () => out({ type: "connected", id: s.id, recovered: s.recovered }));
s.on("ev", (i) => {
  if (!t0) return;
  count++;
  if (i <= last) ordered = false;
  last = i;
  if (count === n) {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    out({ type: "done", ms, recovered: s.recovered, ordered, id: s.id });
  }
});
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "drop") {
    s.io.engine.close();
    out({ type: "dropped" });
  } else if (line === "reconnect") {
    t0 = process.hrtime.bigint();
    s.connect();
  } else if (line === "exit") {
    s.disconnect();
    process.exit(0);
  }
});
