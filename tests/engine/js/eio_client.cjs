// Drives the real engine.io-client (the one socket.io-client uses) against a server URL.
// Prints one JSON line with what happened; exit code 0 on success.
const { Socket } = require("engine.io-client");

const [url, transports] = [process.argv[2], process.argv[3].split(",")];
const result = { upgraded: false, messages: [], transport: null };
const socket = new Socket(url, { path: "/engine.io", transports });
const timer = setTimeout(() => fail("timeout"), 8000);

function fail(why) {
  console.log(JSON.stringify({ ...result, error: why }));
  process.exit(1);
}

socket.on("open", () => {
  result.transport = socket.transport.name;
  const sendAll = () => {
    socket.send("hello");
    socket.send(Buffer.from([1, 2, 3]));
  };
  if (transports.length > 1) socket.on("upgrade", () => { result.upgraded = true; sendAll(); });
  else sendAll();
});
socket.on("message", (data) => {
  result.messages.push(typeof data === "string" ? data : Array.from(data));
  if (result.messages.length === 2) {
    result.transport = socket.transport.name;
    clearTimeout(timer);
    socket.close();
  }
});
socket.on("close", (reason) => {
  result.closeReason = reason;
  console.log(JSON.stringify(result));
  setTimeout(() => process.exit(0), 300); // let the close packet (a POST over polling) go out
});
socket.on("error", (err) => fail(String(err)));
