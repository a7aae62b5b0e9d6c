"""The default Socket.IO parser: JSON text plus binary attachments (socket.io-parser 4.2.x).

Wire format of one packet: ``<type>[<attachments>-][<nsp>,][<ack id>][<json>]``; the
namespace is left out when it is "/". Bytes found in EVENT/ACK data are replaced by
``{"_placeholder":true,"num":n}`` and sent as separate binary messages after the text.

Output matches JavaScript's ``JSON.stringify``: compact, non-ASCII left as is, lone
surrogates escaped, NaN/Infinity written as null, integral floats written as integers.
(One known difference: floats below 1e-4 keep Python's exponent form, e.g. ``1e-05`` where
JavaScript writes ``0.00001``; both parse to the same number.)
The common case (no bytes, nothing to fix) costs one C ``json`` call plus a few substring
checks; the structure is walked only when bytes or an odd float show up.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

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

__all__ = ["MAX_ATTACHMENTS", "DefaultDecoder", "DefaultEncoder"]

MAX_ATTACHMENTS = 10  # socket.io-parser's default `maxAttachments`

_BINARY = (bytes, bytearray, memoryview)


class _HasBinary(Exception):
    """Raised from inside json.dumps when it meets bytes: switches to the binary path."""


def _default(obj: Any) -> Any:
    if isinstance(obj, _BINARY):
        raise _HasBinary
    raise TypeError(
        f"cannot send a {type(obj).__name__}: use dict, list, str, int, float, bool, None or bytes"
    )


_dumps = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    check_circular=False,
    separators=(",", ":"),
    default=_default,
).encode

# Python writes some floats where JavaScript writes an integer: 1.0 (JS: 1), 1e+16 (JS:
# 10000000000000000). Only outputs that contain such a number literal need the slow path.
_FLOAT_FIX = re.compile(r"[\[,:]-?\d+\.0(?=[,\]}]|$)|[\[,:]-?\d(?:\.\d+)?e\+(?:1[6-9]|20)(?=[,\]}]|$)")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _js_float(value: float) -> float | int | None:
    """The Python value json writes the way JavaScript writes this number."""
    if value - value != 0.0:  # NaN or +/-Infinity: JSON.stringify writes null
        return None
    if value == int(value) and -1e21 < value < 1e21:
        if -9007199254740992.0 <= value <= 9007199254740992.0:
            return int(value)
        return int(Decimal(repr(value)))  # JS prints the shortest digits, zero padded
    return value


def _prepare(obj: Any, buffers: list[bytes] | None) -> Any:
    """Copy ``obj`` with bytes replaced by placeholders (collected in ``buffers``) and
    floats made JavaScript-shaped."""
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return obj
    if t is float:
        return _js_float(obj)
    if t is list or t is tuple:
        return [_prepare(v, buffers) for v in obj]
    if t is dict:
        return {k: _prepare(v, buffers) for k, v in obj.items()}
    if isinstance(obj, _BINARY):
        if buffers is None:
            raise TypeError("binary data is only allowed in EVENT and ACK packets")
        buffers.append(obj if type(obj) is bytes else bytes(obj))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if isinstance(obj, float):
        return _js_float(float(obj))
    if isinstance(obj, (list, tuple)):
        return [_prepare(v, buffers) for v in obj]
    if isinstance(obj, dict):
        return {k: _prepare(v, buffers) for k, v in obj.items()}
    return obj  # str/int subclasses are fine; anything else makes json raise TypeError


def _escape_surrogates(text: str) -> str:
    """Join surrogate pairs and escape lone surrogates as JSON.stringify does (ES2019)."""
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _to_json(data: Any, binary_ok: bool) -> tuple[str, list[bytes] | None]:
    """JSON text of ``data`` and the attachments pulled out of it (None if there were none)."""
    buffers: list[bytes] | None = None
    try:
        try:
            text = _dumps(data)
        except _HasBinary:
            if not binary_ok:
                raise TypeError("binary data is only allowed in EVENT and ACK packets") from None
            buffers = []
            text = _dumps(_prepare(data, buffers))
        except ValueError:  # NaN / Infinity
            if binary_ok:
                buffers = []
            text = _dumps(_prepare(data, buffers))
        else:
            if ("." in text or "e+" in text) and _FLOAT_FIX.search(text):
                text = _dumps(_prepare(data, None))
    except RecursionError:
        raise ValueError("packet data is nested too deeply (or contains a cycle)") from None
    if not text.isascii() and _SURROGATE.search(text):
        text = _escape_surrogates(text)
    return text, buffers or None


class DefaultEncoder:
    """Stateless encoder; one instance is shared by every connection."""

    __slots__ = ()

    def encode(self, packet: Packet) -> list[str | bytes]:
        """Encode a packet into engine message payloads: one string, then attachments."""
        ptype: int = packet.type
        if ptype >= 5:
            ptype -= 3  # BINARY_* are chosen from the data, like socket.io-parser does
        data = packet.data
        if data is None:
            body, buffers = "", None
        else:
            body, buffers = _to_json(data, ptype == 2 or ptype == 3)
        nsp = packet.nsp
        ack_id = packet.id
        head = f"{ptype + 3}{len(buffers)}-" if buffers else _TYPE_DIGIT[ptype]
        if nsp != "/" and nsp:
            head = f"{head}{nsp},"
        if ack_id is not None:
            head = f"{head}{int(ack_id)}"
        if buffers:
            return [head + body, *buffers]
        return [head + body]


_TYPE_DIGIT = ("0", "1", "2", "3", "4")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_loads = json.JSONDecoder(parse_constant=_reject_constant).decode

_DIGITS = frozenset("0123456789")
_MAX_ACK_ID = MAX_ACK_ID


class _Pending:
    """A binary packet whose attachments are still arriving."""

    __slots__ = ("buffers", "count", "packet", "slots")

    def __init__(self, packet: Packet, count: int, slots: list[tuple[Any, Any, int]]) -> None:
        self.packet = packet
        self.count = count
        self.slots = slots
        self.buffers: list[bytes] = []


def _find_placeholders(data: Any, count: int) -> list[tuple[Any, Any, int]]:
    """Where each placeholder sits (container, key, attachment index); checks each index."""
    slots: list[tuple[Any, Any, int]] = []
    stack = [data]
    while stack:
        node = stack.pop()
        items = enumerate(node) if type(node) is list else node.items()
        for key, value in items:
            tv = type(value)
            if tv is dict:
                if value.get("_placeholder") is True:
                    num = value.get("num")
                    if type(num) is not int or not 0 <= num < count:
                        raise ParseError("illegal attachments: bad placeholder index")
                    slots.append((node, key, num))
                else:
                    stack.append(value)
            elif tv is list:
                stack.append(value)
    return slots


class DefaultDecoder:
    """Decoder for one connection: text packets, then the attachments they announce.

    After a ParseError the connection should be closed; ``reset()`` drops a partial packet.
    """

    __slots__ = ("_max_attachments", "_pending")

    def __init__(self, max_attachments: int = MAX_ATTACHMENTS) -> None:
        self._pending: _Pending | None = None
        self._max_attachments = max_attachments

    def reset(self) -> None:
        self._pending = None

    def add(self, message: str | bytes) -> Packet | None:
        """Feed one engine message; returns a packet when one is complete."""
        if type(message) is str:
            if self._pending is not None:
                raise ParseError("got text data while waiting for binary attachments")
            return self._decode_text(message)
        if isinstance(message, _BINARY):
            pending = self._pending
            if pending is None:
                raise ParseError("got binary data while no binary packet is pending")
            pending.buffers.append(message if type(message) is bytes else bytes(message))
            if len(pending.buffers) < pending.count:
                return None
            self._pending = None
            buffers = pending.buffers
            for container, key, num in pending.slots:
                container[key] = buffers[num]
            return pending.packet
        raise ParseError(f"unexpected message type {type(message).__name__}")

    def _decode_text(self, text: str) -> Packet | None:
        length = len(text)
        if not length:
            raise ParseError("empty packet")
        ptype = ord(text[0]) - 48
        if not 0 <= ptype <= 6:
            raise ParseError(f"unknown packet type {text[0]!r}")
        i = 1
        count = -1
        if ptype >= 5:
            dash = text.find("-", 1, 8)
            digits = text[1:dash] if dash > 1 else ""
            if not digits.isascii() or not digits.isdigit():
                raise ParseError("illegal attachments")
            count = int(digits)
            if count > self._max_attachments:
                raise ParseError(f"too many attachments ({count} > {self._max_attachments})")
            i = dash + 1
        nsp = "/"
        if i < length and text[i] == "/":
            comma = text.find(",", i)
            if comma < 0:
                nsp, i = text[i:], length
            else:
                nsp, i = text[i:comma], comma + 1
        ack_id = None
        if i < length and text[i] in _DIGITS:
            start = i
            i += 1
            end = min(length, start + 17)  # 17 digits are too many already: stop there
            while i < end and text[i] in _DIGITS:
                i += 1
            if i - start > 16 or (ack_id := int(text[start:i])) > _MAX_ACK_ID:
                raise ParseError("invalid ack id: too large")
        present = i < length
        data = None
        if present:
            try:
                data = _loads(text[i:] if i else text)
            except (ValueError, RecursionError) as exc:
                raise ParseError(f"invalid payload: {exc}") from None
            # deep data needs more than MAX_DEPTH brackets: two C scans skip the walk usually
            if (type(data) is list or type(data) is dict) and (
                text.count("[", i) + text.count("{", i) > MAX_DEPTH
            ):
                check_depth(data)
        if not present and ptype in (2, 3):
            # The reference decodes an EVENT/ACK with no payload (data undefined) and the
            # server then ignores it; closing the connection over it would be harsher.
            return Packet(_PTYPES[ptype], nsp, None, ack_id)
        check_payload(ptype - 3 if ptype >= 5 else ptype, data, present)
        if count < 0:
            return Packet(_PTYPES[ptype], nsp, data, ack_id)
        packet = Packet(_PTYPES[ptype - 3], nsp, data, ack_id)
        slots = _find_placeholders(data, count)
        if count == 0:
            return packet
        self._pending = _Pending(packet, count, slots)
        return None
