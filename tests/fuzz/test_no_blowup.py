"""No quadratic blow-up: decoding a 1 MB adversarial input (many separators, deep nesting,
many placeholders, long digit runs, the msgpack exact path...) costs about 10x what a
100 kB one does. Ratios, not absolute times, so the check holds on a loaded machine: linear
work gives ~10, quadratic ~100; the bound is 30."""

from __future__ import annotations

import base64
import gc
import time
from collections.abc import Callable, Sequence

import pytest

from siopg.engine.message import EncodedPacket
from siopg.engine.protocol import decode_payload
from siopg.engine.session import EngineSession, SessionConfig
from siopg.parser import ParseError, get_parser

SMALL, LARGE = 100_000, 1_000_000
MAX_RATIO = 30
MP_HEAD = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data"


def mp_array(items: bytes, count: int) -> bytes:
    return MP_HEAD + b"\xdd" + (count + 1).to_bytes(4, "big") + b"\xa2ev" + items


class _Driver:
    def request_flush(self) -> None: ...
    def set_deadline(self, when: float | None) -> None: ...
    def poll_alive(self) -> bool:
        return True

    def answer_poll(self, body: str, packets: Sequence[EncodedPacket] = ()) -> None: ...
    def ws_write(self, packets: Sequence[EncodedPacket]) -> int:
        return 0

    def ws_close(self) -> None: ...

    def deliver(self, data: str | bytes) -> None: ...
    def session_closed(self, reason: str, description: str | None) -> None: ...


def post(body: bytes) -> None:
    session = EngineSession("s", "polling", SessionConfig(max_http_buffer_size=2 * LARGE), _Driver(), lambda: 0.0)
    session.open()
    session.begin_post()
    session.on_post(body, "text/plain")


def default(text: str) -> None:
    get_parser("default").new_decoder().add(text)


def msgpack(raw: bytes) -> None:
    get_parser("msgpack").new_decoder().add(raw)


PH = '{"_placeholder":true,"num":0}'
# name -> (decode function, build input of about n bytes)
CASES: dict[str, tuple[Callable[[object], None], Callable[[int], object]]] = {
    "payload separators": (decode_payload, lambda n: "4a\x1e" * (n // 3) + "4"),  # type: ignore[dict-item]
    "payload empty records": (decode_payload, lambda n: "\x1e" * n),  # type: ignore[dict-item]
    "post separators": (post, lambda n: b"4a\x1e" * (n // 3) + b"4"),  # type: ignore[dict-item]
    "post base64": (post, lambda n: b"b" + base64.b64encode(b"\0" * (n * 3 // 4))),  # type: ignore[dict-item]
    "default placeholders": (default, lambda n: '51-["ev",' + ",".join([PH] * (n // 30)) + "]"),  # type: ignore[dict-item]
    "default deep nesting": (default, lambda n: '2["ev",' + "[" * (n // 2) + "]" * (n // 2) + "]"),  # type: ignore[dict-item]
    "default open brackets": (default, lambda n: '2["ev",' + "[" * n),  # type: ignore[dict-item]
    "default ack digits": (default, lambda n: "2" + "1" * n),  # type: ignore[dict-item]
    "default namespace": (default, lambda n: "2/" + "a" * n),  # type: ignore[dict-item]
    "default many brackets in strings": (default, lambda n: '2["ev","' + "[{" * (n // 2) + '"]'),  # type: ignore[dict-item]
    "default wide array": (default, lambda n: '2["ev"' + ",[1]" * (n // 4) + "]"),  # type: ignore[dict-item]
    "msgpack ints": (msgpack, lambda n: mp_array(b"\x01" * n, n)),  # type: ignore[dict-item]
    "msgpack deep nesting": (msgpack, lambda n: MP_HEAD + b"\x92\xa2ev" + b"\x91" * n + b"\xc0"),  # type: ignore[dict-item]
    "msgpack exact path undefined": (  # the "\xd6\xff" forces the pure-Python decoder
        msgpack, lambda n: mp_array(b"\xa2\xd6\xff" + b"\xd4\x00\x00" * (n // 3), n // 3 + 1)),  # type: ignore[dict-item]
    "msgpack nested arrays wide": (msgpack, lambda n: mp_array(b"\x91\x01" * (n // 2), n // 2)),  # type: ignore[dict-item]
}


def best_time(func: Callable[[object], None], data: object, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            try:
                func(data)
            except (ParseError, ValueError):  # rejecting is fine; only the time matters here
                pass
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best


@pytest.mark.parametrize("name", sorted(CASES))
def test_decoding_cost_grows_linearly(name: str) -> None:
    func, build = CASES[name]
    small = best_time(func, build(SMALL), 3)
    large = best_time(func, build(LARGE), 2)
    floor = 1e-3  # below a millisecond, timer noise dominates: count it as 1 ms
    ratio = max(large, floor) / max(small, floor)
    assert ratio < MAX_RATIO, f"{name}: {small * 1000:.1f} ms -> {large * 1000:.1f} ms (x{ratio:.0f})"
    assert large < 5.0, f"{name}: {large:.2f} s for 1 MB"
