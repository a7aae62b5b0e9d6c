"""The msgpack Socket.IO parser, byte-compatible with socket.io-msgpack-parser 3.0.2.

That parser sends each packet as one binary message: the packet object encoded by
notepack.io, e.g. ``{"type": 2, "data": [...], "nsp": "/"}``. notepack writes JS numbers
that are integers with the smallest int format (uint for >= 0), other numbers as float64,
strings as str, Buffers as bin, ArrayBuffers/typed arrays as ext type 0, ``undefined`` as
fixext1 type 0 and Dates as fixext8 type 0 (milliseconds). It reads float32 and every other
ext type too (``[type, bytes]``).

The C ``msgpack`` library does the work; a small exact decoder below handles the few inputs
where its output would differ from notepack's (ext type -1, ambiguous type-0 exts, odd map
keys, broken UTF-8), so the common path stays fast.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack

from .packet import (
    MAX_ACK_ID,
    MAX_DEPTH,
    Packet,
    PacketType,
    ParseError,
    check_depth,
    check_payload,
)

_PTYPES = tuple(PacketType)  # index -> member, cheaper than calling PacketType(n)

__all__ = ["MsgpackDecoder", "MsgpackEncoder"]

_BINARY = (bytes, bytearray, memoryview)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# The exact decoder recurses: it stops one level past the packet map plus MAX_DEPTH levels
# of data (msgpack (C) allows 1024); check_depth then applies the bound both parsers share.
_MAX_DEPTH = MAX_DEPTH + 2


# ----------------------------------------------------------------------------- encoding


def _default(obj: Any) -> Any:
    if isinstance(obj, int):  # out of 64-bit range: _js_value writes it as float64
        raise OverflowError
    if isinstance(obj, datetime):  # notepack writes a Date as fixext8 type 0, in ms
        if obj.tzinfo is None:
            obj = obj.replace(tzinfo=UTC)
        ms = (obj - _EPOCH) // _MS
        return msgpack.ExtType(0, struct.pack(">q", ms))
    raise TypeError(
        f"cannot send a {type(obj).__name__}: use dict, list, str, int, float, bool, None or bytes"
    )


_local = threading.local()


def _packb(obj: Any) -> bytes:
    """msgpack.packb with one reusable Packer per thread (a Packer is not thread-safe)."""
    pack: Callable[[Any], bytes]
    try:
        pack = _local.pack
    except AttributeError:
        pack = _local.pack = msgpack.Packer(use_bin_type=True, default=_default).pack
    return pack(obj)


def _fix_str(value: str) -> str:
    """What notepack writes for a string with surrogates: pairs joined, lone ones U+FFFD."""
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _js_value(obj: Any) -> Any:
    """Copy ``obj`` with numbers shaped as notepack writes them (integral floats as ints,
    ints out of 64-bit range as float64) and strings made encodable."""
    t = type(obj)
    if t is float or (t is not bool and isinstance(obj, float)):
        if obj - obj == 0.0 and obj == int(obj) and -(2.0**63) <= obj < 2.0**64:
            return int(obj)
        return float(obj)
    if t is int or (t is not bool and isinstance(obj, int)):
        if -(2**63) <= obj < 2**64:
            return int(obj)
        return float(obj)
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return _fix_str(obj)
        return obj
    if isinstance(obj, (list, tuple)):
        return [_js_value(v) for v in obj]
    if isinstance(obj, dict):
        return {_js_value(k): _js_value(v) for k, v in obj.items()}
    return obj


class MsgpackEncoder:
    """Stateless encoder; one instance is shared by every connection."""

    __slots__ = ()

    def encode(self, packet: Packet) -> list[str | bytes]:
        """Encode a packet as one binary message (key order as socket.io builds packets)."""
        ptype = int(packet.type)
        if ptype >= 5:
            ptype -= 3  # the msgpack parser has no BINARY_* types
        data = packet.data
        ack_id = packet.id
        if ptype == 3 and ack_id is not None:  # socket.io builds acks as {id, type, data}
            obj: dict[str, Any] = {"id": ack_id, "type": 3, "data": data}
        else:
            obj = {"type": ptype}
            if data is not None:
                obj["data"] = data
            if ack_id is not None:
                obj["id"] = ack_id
        obj["nsp"] = packet.nsp
        try:
            try:
                out = _packb(obj)
            except (UnicodeEncodeError, OverflowError):
                out = _packb(_js_value(obj))
            else:
                if b"\xcb" in out:  # maybe an integral float, which JS writes as an int
                    out = _packb(_js_value(obj))
        except RecursionError:
            raise ValueError("packet data is nested too deeply (or contains a cycle)") from None
        except ValueError as exc:  # msgpack's own depth limit
            raise ValueError(f"cannot encode packet: {exc}") from None
        return [out]


# ----------------------------------------------------------------------------- decoding


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "undefined"


_UNDEF = _Undefined()


class _Ambiguous(Exception):
    """A type-0 ext whose meaning depends on the exact header bytes."""


def _ext_fast(code: int, data: bytes) -> Any:
    if code == 0:
        if len(data) == 1 or len(data) == 8:
            raise _Ambiguous
        return data  # ArrayBuffer / typed array
    return [code, data]


def _ext_fixed(code: int, data: bytes) -> Any:
    """ext hook once we know every 1- and 8-byte type-0 ext is a fixext (undefined, Date)."""
    if code == 0:
        if len(data) == 1:
            return _UNDEF
        if len(data) == 8:
            return _date(data)
        return data
    return [code, data]


def _date(data: bytes) -> datetime:
    ms: int = struct.unpack(">q", data)[0]
    try:
        return _EPOCH + ms * _MS
    except OverflowError:
        raise ParseError("invalid date") from None




def _unpack(raw: bytes) -> tuple[Any, bool]:
    """Decode one notepack message: (value, whether it may hold `undefined` markers)."""
    if b"\xff" in raw and (b"\xd6\xff" in raw or b"\xd7\xff" in raw or b"\xc7\x0c\xff" in raw):
        return _ExactDecoder(raw).run(), True  # maybe ext -1, which msgpack makes a Timestamp
    try:
        return msgpack.unpackb(raw, ext_hook=_ext_fast), False
    except _Ambiguous:
        pass
    except Exception:  # noqa: BLE001 - any msgpack failure: the exact decoder gives the verdict
        return _ExactDecoder(raw).run(), True  # raises ParseError with notepack's verdict
    if b"\x01\x00" in raw or b"\x08\x00" in raw:  # maybe ext 8/16/32 of 1 or 8 bytes
        return _ExactDecoder(raw).run(), True
    try:
        return msgpack.unpackb(raw, ext_hook=_ext_fixed), True
    except ParseError:
        raise
    except Exception:  # noqa: BLE001 - as above: the exact decoder raises the ParseError
        return _ExactDecoder(raw).run(), True


def _undefined_to_none(value: Any) -> Any:
    if value is _UNDEF:
        return None
    t = type(value)
    if t is list:
        return [_undefined_to_none(v) for v in value]
    if t is dict:
        return {k: _undefined_to_none(v) for k, v in value.items()}
    return value


def _js_key(key: Any) -> Any:
    """A map key as JavaScript would turn it into a property name (scalars only)."""
    t = type(key)
    if t is str or t is bytes:
        return key
    if t is bool:
        return "true" if key else "false"
    if t is int:
        return str(key)
    if t is float:
        if math.isnan(key):
            return "NaN"
        if key in (math.inf, -math.inf):
            return "Infinity" if key > 0 else "-Infinity"
        if key == int(key) and abs(key) < 1e21:
            return str(int(key))
        return repr(key)
    if key is None:
        return "null"
    if key is _UNDEF:
        return "undefined"
    raise ParseError(f"invalid map key of type {t.__name__}")


class _ExactDecoder:
    """A plain reader of notepack's dialect, used only when the C library can't be exact."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)

    def run(self) -> Any:
        try:
            value = self.parse(0)
        except RecursionError:
            raise ParseError("msgpack data nested too deeply") from None
        if self.pos != self.end:
            raise ParseError(f"{self.end - self.pos} trailing bytes")
        return value

    def take(self, n: int) -> bytes:
        pos = self.pos
        if pos + n > self.end:
            raise ParseError("truncated msgpack data")
        self.pos = pos + n
        return self.buf[pos : pos + n]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def sint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big", signed=True)

    def items(self, n: int, depth: int) -> list[Any]:
        if n > self.end - self.pos:
            raise ParseError("truncated msgpack data")
        return [self.parse(depth) for _ in range(n)]

    def mapping(self, n: int, depth: int) -> dict[Any, Any]:
        if 2 * n > self.end - self.pos:
            raise ParseError("truncated msgpack data")
        out: dict[Any, Any] = {}
        for _ in range(n):
            key = _js_key(self.parse(depth))
            out[key] = self.parse(depth)
        return out

    def text(self, n: int) -> str:
        return self.take(n).decode("utf-8", "replace")

    def ext(self, n: int, fixed: bool) -> Any:
        code = self.sint(1)
        data = self.take(n)
        if code == 0:
            if not fixed:
                return data  # ArrayBuffer
            if n == 1:
                return _UNDEF
            if n == 8:
                return _date(data)
        return [code, data]

    def parse(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ParseError("msgpack data nested too deeply")
        depth += 1
        b = self.uint(1)
        if b < 0x80:
            return b
        if b < 0x90:
            return self.mapping(b & 0x0F, depth)
        if b < 0xA0:
            return self.items(b & 0x0F, depth)
        if b < 0xC0:
            return self.text(b & 0x1F)
        if b > 0xDF:
            return b - 0x100
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if 0xC4 <= b <= 0xC6:
            return self.take(self.uint(1 << (b - 0xC4)))
        if 0xC7 <= b <= 0xC9:
            return self.ext(self.uint(1 << (b - 0xC7)), False)
        if b == 0xCA:
            return struct.unpack(">f", self.take(4))[0]
        if b == 0xCB:
            return struct.unpack(">d", self.take(8))[0]
        if 0xCC <= b <= 0xCF:
            return self.uint(1 << (b - 0xCC))
        if 0xD0 <= b <= 0xD3:
            return self.sint(1 << (b - 0xD0))
        if 0xD4 <= b <= 0xD8:
            return self.ext(1 << (b - 0xD4), True)
        if 0xD9 <= b <= 0xDB:
            return self.text(self.uint(1 << (b - 0xD9)))
        if b == 0xDC or b == 0xDD:
            return self.items(self.uint(2 if b == 0xDC else 4), depth)
        if b == 0xDE or b == 0xDF:
            return self.mapping(self.uint(2 if b == 0xDE else 4), depth)
        raise ParseError(f"invalid msgpack byte 0x{b:02x}")


class MsgpackDecoder:
    """Decoder for one connection (stateless: every message is a whole packet)."""

    __slots__ = ()

    def reset(self) -> None:
        """Nothing to drop: msgpack packets never span several messages."""

    def add(self, message: str | bytes) -> Packet | None:
        """Decode one binary engine message into a packet."""
        if type(message) is not bytes:
            if not isinstance(message, _BINARY):
                raise ParseError("the msgpack parser expects binary messages")
            message = bytes(message)
        obj, maybe_undef = _unpack(message)
        if type(obj) is not dict:
            raise ParseError("invalid packet: not a map")
        ptype = obj.get("type")
        if type(ptype) is float and ptype.is_integer():
            ptype = int(ptype)
        if type(ptype) is not int or not 0 <= ptype <= 4:
            raise ParseError("invalid packet type")
        nsp = obj.get("nsp")
        if type(nsp) is not str:
            raise ParseError("invalid namespace")
        data = obj.get("data", _UNDEF)
        present = data is not _UNDEF
        if not present:
            data = None
        else:
            # deep data needs more than MAX_DEPTH bytes: small packets skip the walk
            if len(message) > MAX_DEPTH and (type(data) is list or type(data) is dict):
                check_depth(data)
            if maybe_undef:
                data = _undefined_to_none(data)
        check_payload(ptype, data, present)
        ack_id = obj.get("id", _UNDEF)
        if ack_id is _UNDEF:
            ack_id = None
        else:
            if type(ack_id) is float and ack_id.is_integer():
                ack_id = int(ack_id)
            if type(ack_id) is not int or not 0 <= ack_id <= MAX_ACK_ID:
                raise ParseError("invalid packet id")
        return Packet(_PTYPES[ptype], nsp, data, ack_id)
