"""RemoteSocket: a socket of another server (from fetch_sockets), driven through the adapter.

Defined beside `BroadcastOperator` (which builds it from the adapter's `SocketDetails` and which
it uses to reach the socket); this module keeps the old import path.
"""

from siopg.server.broadcast import RemoteSocket

__all__ = ["RemoteSocket"]
