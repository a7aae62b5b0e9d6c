"""Interop with the reference client: engine.io-client (Node) against both bindings."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from .conftest import Factory

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "js" / "eio_client.cjs"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "engine.io-client").is_dir(),
    reason="node and node_modules/engine.io-client are needed",
)


async def _run_client(url: str, transports: str) -> dict:  # type: ignore[type-arg]
    proc = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), url, transports, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, (out, err)
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("transports", ["polling,websocket", "websocket", "polling"])
async def test_reference_client_round_trip(any_engine: Factory, transports: str) -> None:
    srv = await any_engine()
    base = srv.url.rsplit("/engine.io/", 1)[0]
    result = await _run_client(base, transports)
    assert result["messages"] == ["hello", [1, 2, 3]]
    expected = "polling" if transports == "polling" else "websocket"
    assert result["transport"] == expected
    assert result["upgraded"] is (transports == "polling,websocket")
    await srv.recorder.wait_closed()
    assert srv.recorder.closes[0][1] == "transport close"
