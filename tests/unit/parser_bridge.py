"""The bridge to the reference JS parsers (tests/unit/js/parser_codec.js), shared by the
default and msgpack parser tests: run it, and convert values to and from its JSON."""

from __future__ import annotations

import base64
import json
import math
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
from js_wire import NOT_TAGGED, b64, decode_tags, encode_tags

from siopg.parser import Packet, PacketType

JS_CODEC = Path(__file__).parent / "js" / "parser_codec.js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="`node` is not on PATH: no JS reference")


def run_node(parser: str, op: str, items: list[Any]) -> list[Any]:
    """Encode or decode `items` with the reference JS parser `parser` ("default" | "msgpack")."""
    proc = subprocess.run(
        [NODE or "node", str(JS_CODEC)],
        input=json.dumps({"parser": parser, "op": op, "items": items}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


def _tag(value: Any) -> dict[str, Any] | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bin": b64(bytes(value))}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$num": str(value).replace("inf", "Infinity").replace("nan", "NaN")}
    return None


def _untag(value: dict[str, Any]) -> Any:
    return base64.b64decode(value["$bin"]) if "$bin" in value else NOT_TAGGED


def to_wire(value: Any) -> Any:
    """Python value -> bridge JSON: bytes as {"$bin": base64}, NaN/±Infinity as {"$num": ...}."""
    return encode_tags(value, _tag)


def from_wire(value: Any) -> Any:
    """Bridge JSON -> Python value (bytes for {"$bin": ...})."""
    return decode_tags(value, _untag)


def spec_of(p: Packet) -> dict[str, Any]:
    """A packet as the bridge's JSON description."""
    out: dict[str, Any] = {"type": int(p.type), "nsp": p.nsp}
    if p.data is not None:
        out["data"] = to_wire(p.data)
    if p.id is not None:
        out["id"] = p.id
    return out


def random_packets(rng: random.Random, random_value: Callable[[random.Random], Any], n: int = 300) -> list[Packet]:
    """`n` EVENT/ACK packets: random namespace and ack id, an event name and up to 3 random args."""
    return [
        Packet(
            rng.choice([PacketType.EVENT, PacketType.ACK]),
            rng.choice(["/", "/a", "/ns-ü"]),
            [f"ev{rng.randrange(9)}", *(random_value(rng) for _ in range(rng.randrange(4)))],
            rng.choice([None, rng.randrange(2**31)]),
        )
        for _ in range(n)
    ]
