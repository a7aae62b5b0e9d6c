"""Engine.IO-only echo server, configured as the engine.io-protocol test suite expects.

    python examples/engineio_echo.py --port 3000

Every message a client sends is sent back to it. The settings match the reference server
of the suite: path /engine.io/, pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1e6,
CORS for any origin.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiohttp import web

try:
    import siopg  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from siopg.engine import EngineOptions, EngineServer, EngineSocket, OutgoingMessage
from siopg.engine.aiohttp_binding import aiohttp_handler
from siopg.engine.asgi import EngineASGIApp


def make_engine() -> EngineServer:
    def on_connection(socket: EngineSocket) -> None:
        socket.on_message = lambda data: socket.send([OutgoingMessage(data)])

    return EngineServer(
        on_connection,
        EngineOptions(
            path="/engine.io/",
            ping_interval=0.3,
            ping_timeout=0.2,
            max_http_buffer_size=1_000_000,
            cors_allowed_origins="*",
        ),
    )


def make_app() -> tuple[web.Application, EngineServer]:
    engine = make_engine()
    app = web.Application()
    app.router.add_route("*", engine.options.path, aiohttp_handler(engine))

    async def shutdown(_app: web.Application) -> None:
        await engine.close()

    app.on_shutdown.append(shutdown)
    return app, engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--asgi", action="store_true", help="serve the ASGI app with uvicorn")
    args = parser.parse_args()
    if args.asgi:
        import uvicorn

        uvicorn.run(EngineASGIApp(make_engine()), host=args.host, port=args.port, log_level="warning")
        return
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    app, _ = make_app()
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
