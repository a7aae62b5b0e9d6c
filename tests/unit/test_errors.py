"""One exception tree: every public siopg exception derives from siopg.SiopgError.

`except siopg.SiopgError` must catch anything siopg raises on purpose, while each error keeps
its historical built-in base (`except ValueError` around a parser keeps working).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import siopg
from siopg.errors import AckTimeoutError, SiopgError

PACKAGE_DIR = Path(siopg.__file__).resolve().parent


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] in ("__main__", "worker_main"):
            continue  # scripts
        names.append(".".join(parts))
    return names


def _public_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == name  # defined here, not re-exported
                and not attr.startswith("_")
            ):
                found[f"{name}.{attr}"] = obj
    return found


def test_every_public_exception_derives_from_siopg_error() -> None:
    exceptions = _public_exceptions()
    assert len(exceptions) >= 15  # the walk found them (engine, parser, adapter, server, ...)
    outside = sorted(name for name, cls in exceptions.items() if not issubclass(cls, SiopgError))
    assert not outside, "exceptions outside the siopg.SiopgError tree:\n  " + "\n  ".join(outside)


@pytest.mark.parametrize(
    ("qualname", "builtin"),
    [
        ("siopg.parser.ParseError", ValueError),
        ("siopg.engine.protocol.PacketDecodeError", ValueError),
        ("siopg.errors.AckTimeoutError", TimeoutError),
        ("siopg.emitter.EmitNotConfirmed", ConnectionError),
        ("siopg.adapter.postgres.SchemaError", RuntimeError),
        ("siopg.adapter.postgres.PublishBufferFull", RuntimeError),
        ("siopg.adapter.postgres.PublishRowDropped", RuntimeError),
    ],
)
def test_historical_bases_are_kept(qualname: str, builtin: type[BaseException]) -> None:
    module, _, name = qualname.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, builtin) and issubclass(cls, SiopgError)


def test_public_names() -> None:
    """SiopgError is exported at the top; AckTimeoutError is the same class wherever imported."""
    from siopg.server.errors import AckTimeoutError as from_server

    assert siopg.SiopgError is SiopgError and "SiopgError" in siopg.__all__
    assert siopg.AckTimeoutError is AckTimeoutError is from_server
    err = AckTimeoutError("operation has timed out", ["partial"])
    assert isinstance(err, TimeoutError) and err.responses == ["partial"] and str(err) == "operation has timed out"


def test_errors_carry_what_the_caller_needs() -> None:
    from siopg.engine.errors import Forbidden
    from siopg.runtime import AppLoadError
    from siopg.server.errors import ConnectError, TooManyNamespaces

    assert (Forbidden().status, Forbidden().code) == (403, 4)
    assert (ConnectError("nope", {"retry": 1}).message, ConnectError("nope", {"retry": 1}).data) == ("nope", {"retry": 1})
    assert TooManyNamespaces("/room-9").name == "/room-9"
    assert AppLoadError("no such file: x.py", "x.py:io").ref == "x.py:io"
