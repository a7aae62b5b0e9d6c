"""Red team 2: the ASGI binding (uvicorn) under the WebSocket message bound, compared with
aiohttp. `max_http_buffer_size` bounds one WebSocket message in BYTES and a message past it
closes the connection with 1009 (docs/limits.md, Engine.IO options)."""

from __future__ import annotations

import aiohttp
import pytest
from engine.conftest import Factory, aiohttp_engine, asgi_engine  # noqa: F401  (fixtures used below)


@pytest.fixture(params=["aiohttp", "asgi"])
def binding(request: pytest.FixtureRequest) -> Factory:
    return request.getfixturevalue(f"{request.param}_engine")  # type: ignore[no-any-return]


@pytest.mark.parametrize("text", ["4" + "a" * 1500, "4" + "\u20ac" * 600], ids=["ascii", "multibyte"])
async def test_ws_message_over_the_bound_closes_1009(binding: Factory, text: str) -> None:
    """600 euro signs are 1801 UTF-8 bytes: over a 1000-byte bound, though only 601 characters."""
    srv = await binding(max_http_buffer_size=1000)
    sid = await srv.handshake()
    async with srv.http.ws_connect(srv.ws_url(f"EIO=4&transport=websocket&sid={sid}")) as ws:
        await ws.send_str("2probe")
        assert (await ws.receive(5)).data == "3probe"
        await ws.send_str("5")
        await ws.send_str(text)
        while (msg := await ws.receive(5)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            pass
        assert ws.close_code == 1009, (msg, ws.close_code)
    await srv.recorder.wait_closed()
    assert srv.recorder.closes and srv.recorder.closes[0][1] == "transport error"
