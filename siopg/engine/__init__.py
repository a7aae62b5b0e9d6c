"""Engine.IO protocol 4: sans-I/O core (protocol, session) and aiohttp/ASGI bindings."""

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
    "EngineError", "EngineOptions", "EngineServer", "EngineSocket", "OutgoingMessage",
    "RequestInfo", "FORCED_CLOSE", "PARSE_ERROR", "PING_TIMEOUT", "SERVER_SHUTTING_DOWN",
    "TRANSPORT_CLOSE", "TRANSPORT_ERROR",
]
