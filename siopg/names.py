"""Validation of client- and app-supplied names: namespaces, rooms, event names.

A bottom-layer module (imports nothing of siopg), so every layer can use it: the server
checks names as they come in, and lower layers (the Postgres adapter, the emitter) may check
again as defence in depth. Names are stored in Postgres `text` columns and indexes, which
cannot hold NUL, cannot encode lone surrogates, and cannot index values over ~2.7 kB; a
bound of 256 UTF-8 bytes by default keeps every name well inside all three limits.
"""

from __future__ import annotations

DEFAULT_MAX_NAME_BYTES = 256

# Event names an application may not emit and a client may not send: they mean something to
# the protocol or to the API. The one public list: other layers import it from here.
RESERVED_EVENTS: frozenset[str] = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)


def check_name(value: object, kind: str = "name", max_bytes: int = DEFAULT_MAX_NAME_BYTES) -> str:
    """Return `value` if it is a valid name of `kind` ("namespace", "room", "event name"), else
    raise ValueError saying why: not a string, longer than `max_bytes` UTF-8 bytes, contains
    NUL, or contains a lone surrogate (not encodable as UTF-8).

    Cheap for the common case (ASCII: no encoding needed), so it can sit on emit paths.
    """
    if not isinstance(value, str):
        # ValueError, not TypeError: callers catch one error for every invalid name
        raise ValueError(f"{kind} must be a string, not {type(value).__name__}")
    if value.isascii():
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"invalid {kind} {_preview(value)}: contains a lone surrogate") from None
    if size > max_bytes:
        raise ValueError(f"invalid {kind} {_preview(value)}: {size} bytes, more than the {max_bytes} allowed")
    if "\x00" in value:
        raise ValueError(f"invalid {kind} {_preview(value)}: contains a NUL character")
    return value


def check_event_name(value: object, max_bytes: int = DEFAULT_MAX_NAME_BYTES) -> object:
    """Return an event name if valid: a number (the protocol allows them) or a string that
    passes check_name(); raise ValueError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return check_name(value, "event name", max_bytes)


def is_valid_name(value: object, max_bytes: int = DEFAULT_MAX_NAME_BYTES) -> bool:
    """check_name() as a predicate (for hot paths that drop rather than raise)."""
    try:
        check_name(value, max_bytes=max_bytes)
    except ValueError:
        return False
    return True


def _preview(value: str, limit: int = 40) -> str:
    """A short repr of a possibly huge name, for error messages."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}...({len(value)} characters)"
