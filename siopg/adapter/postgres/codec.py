"""Cluster messages <-> packet-table rows (sans-I/O).

A row keeps routing in columns (kind, uid, nsp, rooms, except_rooms, recoverable, target) so
recovery can filter in SQL, and the rest of the message as msgpack in `payload` (bytes stay
bytes). Rows written by the SQL `emit` functions have `payload_json` (the event arguments)
instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgpack

from siopg.adapter.cluster import ClusterMessage, MessageType, carryable


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"cannot send a {type(value).__name__} across servers (not msgpack-serialisable)")


def pack(value: Any) -> bytes:
    # "surrogatepass": strings a client sent may hold lone surrogates (valid JSON "\ud800");
    # refusing them would drop whole cluster messages (a fetch_sockets answer listing every
    # socket of a server, a session snapshot) because of one client. unpack() reverses it.
    return msgpack.packb(value, use_bin_type=True, default=_default, datetime=False, unicode_errors="surrogatepass")


def pack_state(value: Any) -> tuple[bytes, list[str]]:
    """Pack a socket's state (its `data` in a session row): what msgpack cannot carry is
    replaced by None (see `carryable`) instead of losing the whole session; returns the paths
    replaced. `pack` itself stays exact (an emit's arguments are carried as they are or the
    emit is refused, loudly): see the adapter README, "Values the cluster cannot carry"."""
    try:
        return pack(value), []
    except (TypeError, ValueError, OverflowError):
        fixed, replaced = carryable(value, pack)
        return pack(fixed), replaced


def unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False, unicode_errors="surrogatepass")


@dataclass(slots=True)
class RowBatch:
    """Parallel arrays for `<schema>.publish_batch(...)`: one element per message."""

    kind: list[int] = field(default_factory=list)
    nsp: list[str] = field(default_factory=list)
    rooms: list[str] = field(default_factory=list)
    except_rooms: list[str] = field(default_factory=list)
    recoverable: list[bool] = field(default_factory=list)
    target: list[str | None] = field(default_factory=list)
    payload: list[bytes | None] = field(default_factory=list)
    payload_json: list[str | None] = field(default_factory=list)

    def add(self, row: EncodedRow) -> None:
        self.kind.append(row.kind)
        self.nsp.append(row.nsp)
        self.rooms.append(row.rooms)
        self.except_rooms.append(row.except_rooms)
        self.recoverable.append(row.recoverable)
        self.target.append(row.target)
        self.payload.append(row.payload)
        self.payload_json.append(None)

    def args(self, uid: str) -> tuple[Any, ...]:
        return (
            self.kind, uid, self.nsp, self.rooms, self.except_rooms, self.recoverable,
            self.target, self.payload, self.payload_json,
        )

    def __len__(self) -> int:
        return len(self.kind)


@dataclass(slots=True)
class EncodedRow:
    kind: int
    nsp: str
    rooms: str  # JSON array
    except_rooms: str
    recoverable: bool
    target: str | None
    payload: bytes

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.rooms) + len(self.except_rooms) + 64


def _check_text(value: str, what: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{what} may not contain NUL characters (Postgres text cannot store them)")


def encode(message: ClusterMessage) -> EncodedRow:
    """Raises TypeError/ValueError when the message cannot be stored (nothing is sent then)."""
    _check_text(message.nsp, "a namespace name")
    for room in (*message.rooms, *message.except_):
        _check_text(room, "a room name")
    return EncodedRow(
        kind=int(message.type),
        nsp=message.nsp,
        rooms=json.dumps(list(message.rooms)),
        except_rooms=json.dumps(list(message.except_)),
        recoverable=message.recoverable,
        target=message.target,
        payload=pack(message.data),
    )


def json_list(items: list[str]) -> str:
    return json.dumps(items)


SELECT_COLUMNS = "id, kind, uid, nsp, rooms, except_rooms, recoverable, target, payload, payload_json"


def decode(row: Any) -> ClusterMessage:
    """A row (mapping with SELECT_COLUMNS) as a ClusterMessage; ValueError when malformed."""
    kind = MessageType(row["kind"])
    payload = row["payload"]
    if payload is not None:
        data = unpack(payload)
        if not isinstance(data, dict):
            raise ValueError("payload is not a map")
    else:
        raw_json = row["payload_json"]
        args = json.loads(raw_json) if isinstance(raw_json, str) else raw_json
        if kind != MessageType.BROADCAST or not isinstance(args, list):
            raise ValueError("a row without payload must be a broadcast with JSON arguments")
        data = {"packet": args}
    return ClusterMessage(
        type=kind,
        uid=row["uid"],
        nsp=row["nsp"],
        data=data,
        rooms=tuple(row["rooms"] or ()),
        except_=tuple(row["except_rooms"] or ()),
        recoverable=bool(row["recoverable"]),
        target=row["target"],
    )
