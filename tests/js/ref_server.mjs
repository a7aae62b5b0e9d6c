// Node socket.io 4.8 twin of the siopg apps in tests/apps/ (same events, same answers).
// Running the e2e suite against it (SIOPG_E2E_BACKEND=node) checks that the tests' expectations
// are socket.io's real behaviour.   Usage: node ref_server.mjs <app> <port>
import { createRequire } from "node:module";
import { createServer } from "node:http";

const require = createRequire(import.meta.url);
const { Server } = require("socket.io");
const msgpackParser = require("socket.io-msgpack-parser");

const [app, portArg] = process.argv.slice(2);
const APPS = {
  basic: {},
  msgpack_app: { parser: msgpackParser },
  recovery: { connectionStateRecovery: { maxDisconnectionDuration: 60_000, skipMiddlewares: true } },
  recovery_msgpack: {
    parser: msgpackParser,
    connectionStateRecovery: { maxDisconnectionDuration: 60_000, skipMiddlewares: true },
  },
  recovery_short: { connectionStateRecovery: { maxDisconnectionDuration: 300, skipMiddlewares: true } },
};
if (!(app in APPS)) {
  console.error(`unknown app ${app}`);
  process.exit(2);
}

const httpServer = createServer();
const io = new Server(httpServer, { pingInterval: 1000, pingTimeout: 2000, ...APPS[app] });

function ackOf(args) {
  return typeof args[args.length - 1] === "function" ? args.pop() : null;
}

function register(nsp) {
  nsp.on("connection", (socket) => {
    const nsp = socket.nsp;
    const auth = socket.handshake.auth || {};
    if (auth.join && !socket.recovered) socket.join(auth.join);
    socket.on("disconnect", (reason) => {
      nsp.to("observers").emit("disconnected", { id: socket.id, reason });
    });
    socket.on("echo", (...args) => {
      const ack = ackOf(args);
      if (ack) ack(...args);
      else socket.emit("echo", ...args);
    });
    socket.on("whoami", (ack) =>
      ack({ id: socket.id, nsp: nsp.name, recovered: socket.recovered, auth, query: socket.handshake.query }),
    );
    socket.on("join", (room, ack) => {
      socket.join(room);
      ack([...socket.rooms].sort());
    });
    socket.on("leave", (room, ack) => {
      socket.leave(room);
      ack([...socket.rooms].sort());
    });
    socket.on("set_data", (key, value, ack) => {
      socket.data[key] = value;
      ack(true);
    });
    socket.on("get_data", (ack) => ack(socket.data));
    socket.on("rooms", (ack) => ack([...socket.rooms].sort()));
    socket.on("rooms_of", async (id, ack) => {
      const sockets = await nsp.in(id).fetchSockets();
      ack(sockets.length ? [...sockets[0].rooms].sort() : null);
    });
    socket.on("to", (rooms, except, event, args, ack) => {
      let op = nsp.to(rooms);
      if (except && except.length) op = op.except(except);
      op.emit(event, ...args);
      ack(true);
    });
    socket.on("broadcast", (event, args, ack) => {
      socket.broadcast.emit(event, ...args);
      ack(true);
    });
    socket.on("everyone", (event, args, ack) => {
      nsp.emit(event, ...args);
      ack(true);
    });
    socket.on("ask", async (event, args, timeoutMs, ack) => {
      try {
        const answer = await socket.timeout(timeoutMs).emitWithAck(event, ...args);
        ack({ ok: answer });
      } catch (e) {
        ack({ error: "timeout" });
      }
    });
    socket.on("ask_all", (event, args, timeoutMs, ack) => {
      nsp.timeout(timeoutMs).emit(event, ...args, (err, responses) => {
        if (err) ack({ error: "timeout", responses });
        else ack({ ok: responses });
      });
    });
    socket.on("burst", (rooms, event, count, ack) => {
      for (let i = 0; i < count; i++) nsp.to(rooms).emit(event, i, { i, bin: Buffer.from([i % 256]) });
      ack(count);
    });
    socket.on("kick", (...args) => {
      const ack = ackOf(args);
      ack(true);
      setTimeout(() => socket.disconnect(Boolean(args[0])), 20);
    });
  });
}

register(io.of("/"));
register(io.of("/chat"));
register(io.of(/^\/dyn-\d+$/));
const admin = io.of("/admin");
admin.use((socket, next) => {
  if (socket.handshake.auth && socket.handshake.auth.token === "secret") return next();
  const err = new Error("not authorized");
  err.data = { code: 401, hint: "send a token" };
  next(err);
});
register(admin);
const strict = io.of("/strict");
strict.use((socket, next) => {
  const err = new Error("go away");
  err.data = { reason: "banned" };
  next(err);
});
register(strict);

httpServer.listen(Number(portArg), "127.0.0.1", () => console.log(`ref server ${app} on ${portArg}`));
process.on("SIGTERM", () => {
  io.close(() => process.exit(0));
});
