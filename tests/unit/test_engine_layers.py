"""The engine core stands alone: bindings build on it, never the reverse.

The core (codec, session, socket, server) imports no web framework and none of its own
bindings, anywhere (module level, function bodies or TYPE_CHECKING blocks); EngineSocket
needs a flush batch and an on-closed callback, not an EngineServer.
"""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from pathlib import Path

from siopg.engine import OutgoingMessage, RequestInfo
from siopg.engine.session import SessionConfig
from siopg.engine.socket import EngineSocket, FlushBatch

ENGINE = Path(__file__).resolve().parents[2] / "siopg" / "engine"
BINDINGS = {"aiohttp_binding", "asgi"}
FRAMEWORKS = {"aiohttp", "starlette", "uvicorn", "multidict", "yarl"}
# what the core may import from siopg outside the engine: the bottom layer only
BOTTOM = {"siopg._log", "siopg.names", "siopg.errors"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every import in the module (absolute name, relative ones resolved), with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["siopg", "engine"][: 3 - node.level]
                module = ".".join([*base, *([node.module] if node.module else [])])
                if node.module is None:  # from . import x
                    found += [(node.lineno, f"{module}.{a.name}") for a in node.names]
                    continue
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found




def test_socket_does_not_know_the_server() -> None:
    names = {name for _, name in _imports(ENGINE / "socket.py")}
    assert "siopg.engine.server" not in names


def test_importing_the_engine_loads_no_web_framework() -> None:
    code = (
        "import sys, siopg.engine, siopg.engine.asgi\n"
        "loaded = sorted(m for m in ('aiohttp', 'starlette', 'uvicorn') if m in sys.modules)\n"
        "print(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


async def test_engine_socket_runs_on_a_batch_and_a_callback_alone() -> None:
    batch = FlushBatch()
    closed: list[EngineSocket] = []
    info = RequestInfo(headers={}, query={}, remote_address=None, url="/", secure=False, issued=0)
    sock = EngineSocket("s1", "polling", info, SessionConfig(), asyncio.get_running_loop(), batch, closed.append)
    reasons: list[str] = []
    sock.on_close = lambda reason, description: reasons.append(reason)
    sock._session.open()
    sock.send([OutgoingMessage("a")])
    assert batch.dirty == [sock]  # joined the batch it was given
    await asyncio.sleep(0)
    assert batch.dirty == []
    sock._session.close(discard=True)
    assert closed == [sock]  # the owner's hook, before on_close
    assert reasons == ["forced close"]
