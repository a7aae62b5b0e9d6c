"""Engine.IO protocol 4: sans-I/O core (protocol, session) and aiohttp/ASGI bindings.

Importing this package imports no web framework: the bindings are separate modules that
build on the core (``siopg.engine.aiohttp_binding.aiohttp_handler(engine)``,
``siopg.engine.asgi.EngineASGIApp(engine)``).
"""

from .connection import EngineConnection
from .errors import EngineError
from .message import OutgoingMessage
from .options import EngineOptions
from .request import RequestInfo
from .server import EngineServer
from .session import (
    FORCED_CLOSE,
    PARSE_ERROR,
    PING_TIMEOUT,
    SERVER_SHUTTING_DOWN,
    TRANSPORT_CLOSE,
    TRANSPORT_ERROR,
)
from .socket import EngineSocket

__all__ = [
    "FORCED_CLOSE", "PARSE_ERROR", "PING_TIMEOUT", "SERVER_SHUTTING_DOWN", "TRANSPORT_CLOSE",
    "TRANSPORT_ERROR", "EngineConnection", "EngineError", "EngineOptions", "EngineServer",
    "EngineSocket", "OutgoingMessage", "RequestInfo",
]
