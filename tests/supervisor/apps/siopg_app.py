"""A siopg.Server for the multi-worker tests: who answers, echoes, and broadcasts."""

import os

import siopg
from siopg.supervisor import worker_id

io = siopg.Server(cors_allowed_origins="*", connection_state_recovery=siopg.Recovery())


@io.on("connection")
async def connection(socket):
    socket.join("all")

    @socket.on("whoami")
    async def whoami(data=None, ack=None):
        if ack:
            ack({"worker": worker_id(), "node": os.environ.get("SIOPG_NODE_ID"), "pid": os.getpid()})

    @socket.on("shout")
    async def shout(data, ack=None):
        await io.to("all").emit("shout", data)
        if ack:
            ack(True)
