"""Encode/decode throughput of siopg's Socket.IO parsers (ops/s, one core).

Run: python bench/parser_bench.py [seconds-per-case]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import msgpack

from siopg.parser import Packet, PacketType, get_parser

SMALL = Packet(PacketType.EVENT, "/", ["chat", {"user": "a", "text": "hello"}])
BINARY = Packet(PacketType.EVENT, "/", ["file", {"name": "a.png", "data": bytes(1024)}])


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``, timed in batches so the clock costs nothing."""
    batch, done, start = 1000, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            fn()
        done += batch
    return done / elapsed


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    print(f"{'parser':8} {'packet':7} {'encode ops/s':>13} {'decode ops/s':>13}")
    for name in ("default", "msgpack"):
        spec = get_parser(name)
        for label, packet in (("small", SMALL), ("binary", BINARY)):
            parts = spec.encoder.encode(packet)
            decoder = spec.new_decoder()

            def decode() -> object:
                for part in parts:
                    result = decoder.add(part)
                return result

            assert decode() is not None
            enc = rate(lambda: spec.encoder.encode(packet), seconds)
            dec = rate(decode, seconds)
            print(f"{name:8} {label:7} {enc:13,.0f} {dec:13,.0f}")
    # the floor: the bare library calls for the small event, no Socket.IO framing or checks
    data, obj = SMALL.data, {"type": 2, "data": SMALL.data, "nsp": "/"}
    text, raw = json.dumps(data, separators=(",", ":")), msgpack.packb(obj)
    print(f"{'json':8} {'small':7} {rate(lambda: json.dumps(data, separators=(',', ':')), seconds):13,.0f}"
          f" {rate(lambda: json.loads(text), seconds):13,.0f}   (bare json.dumps/loads)")
    print(f"{'msgpack':8} {'small':7} {rate(lambda: msgpack.packb(obj), seconds):13,.0f}"
          f" {rate(lambda: msgpack.unpackb(raw), seconds):13,.0f}   (bare packb/unpackb)")


if __name__ == "__main__":
    main()
