"""Walkers for the JSON spoken to the Node helpers (tests/js/driver.mjs, tests/unit/js/parser_codec.js).

JSON cannot hold bytes, `undefined` or NaN, so each bridge tags them as one-key dicts
({"$bin": base64}, ...). The walk over lists, tuples and dicts is the same for every bridge;
each passes the few tags it knows. (tests/ is on sys.path through its rootdir conftest.py.)
"""

from __future__ import annotations

import base64
from typing import Any, Callable

#: `untag` answers this for a dict that is not a tag (its items are walked instead)
NOT_TAGGED: Any = object()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encode_tags(value: Any, tag: Callable[[Any], dict[str, Any] | None]) -> Any:
    """Python value -> bridge JSON; `tag(v)` gives the tag dict of a value JSON cannot hold, or None."""
    tagged = tag(value)
    if tagged is not None:
        return tagged
    if isinstance(value, (list, tuple)):
        return [encode_tags(v, tag) for v in value]
    if isinstance(value, dict):
        return {k: encode_tags(v, tag) for k, v in value.items()}
    return value


def decode_tags(value: Any, untag: Callable[[dict[str, Any]], Any]) -> Any:
    """Bridge JSON -> Python value; `untag(d)` gives the value of a tag dict, or NOT_TAGGED."""
    if isinstance(value, list):
        return [decode_tags(v, untag) for v in value]
    if isinstance(value, dict):
        found = untag(value)
        if found is not NOT_TAGGED:
            return found
        return {k: decode_tags(v, untag) for k, v in value.items()}
    return value
