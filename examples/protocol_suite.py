"""The server configuration that socket.io-protocol's test-suite expects.

Run it with `siopg serve examples/protocol_suite.py:io --port 3000`, then `npm test` in a copy
of socket.io-protocol's test-suite/ directory.

A few of the suite's Socket.IO "connect"/"disconnect" tests are flaky against any server,
Node's socket.io 4.8 included: they wait for one frame at a time with one-shot listeners, and
the `ws` client they use fires every frame of one TCP read synchronously, so when the CONNECT
reply and the "auth" event arrive in the same read the second is missed. Like socket.io,
siopg writes the CONNECT reply on its own, at once, and the handler's events in a later write,
which makes that rarer but cannot rule it out.
"""

import siopg

io = siopg.Server(
    ping_interval=0.3,
    ping_timeout=0.2,
    max_http_buffer_size=1_000_000,
    connect_timeout=1.0,
    cors_allowed_origins="*",
)


@io.on("connection")
async def on_connection(socket: siopg.Socket) -> None:
    socket.emit("auth", socket.handshake.auth)

    @socket.on("message")
    def message(*args):
        socket.emit("message-back", *args)

    @socket.on("message-with-ack")
    def message_with_ack(*args, ack=None):
        if ack is not None:
            ack(*args)


@io.of("/custom").on("connection")
async def on_custom(socket: siopg.Socket) -> None:
    socket.emit("auth", socket.handshake.auth)
