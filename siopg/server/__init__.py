"""The user API: Server, Namespace, Socket, BroadcastOperator, RemoteSocket (see docs/api.md)."""

from siopg.server.broadcast import BroadcastOperator
from siopg.server.errors import AckTimeoutError, ConnectError
from siopg.server.namespace import Namespace
from siopg.server.options import Recovery
from siopg.server.parent import ParentNamespace
from siopg.server.remote_socket import RemoteSocket
from siopg.server.server import Server
from siopg.server.socket import Handshake, Socket

__all__ = [
    "AckTimeoutError",
    "BroadcastOperator",
    "ConnectError",
    "Handshake",
    "Namespace",
    "ParentNamespace",
    "Recovery",
    "RemoteSocket",
    "Server",
    "Socket",
]
