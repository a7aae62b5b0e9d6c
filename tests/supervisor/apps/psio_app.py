"""A python-socketio server app for the supervisor tests that must not depend on siopg.Server.

It exercises the supervisor's contract with any aiohttp app: use the worker's sid generator.
"""

import os

import socketio

from siopg.supervisor import worker_id, worker_sid_generator

sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
_gen = worker_sid_generator()
if _gen is not None:
    sio.eio.generate_id = _gen  # type: ignore[method-assign]


@sio.on("whoami")
async def whoami(sid, data=None):
    return {"worker": worker_id(), "pid": os.getpid()}


@sio.on("echo")
async def echo(sid, data):
    await sio.emit("echo", data, to=sid)
    return data


@sio.on("block")
async def block(sid, seconds):
    import time

    time.sleep(seconds)  # a handler that blocks the event loop: the supervisor's watchdog case


def create_app():
    from aiohttp import web

    app = web.Application()
    sio.attach(app)
    return app
