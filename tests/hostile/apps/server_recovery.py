"""The e2e test app with recovery on, plus a "mypid" event that answers the socket's private
session id: a hostile test plays a client that learnt a victim's pid (the secret that allows
a takeover), without digging it out of the official client."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))
from _common import build

import siopg

io = build(connection_state_recovery=siopg.Recovery(max_disconnection_duration=60.0))


@io.on("connection")
def _expose_pid(socket: siopg.Socket) -> None:
    socket.on("mypid", lambda ack=None: ack(socket.pid))
