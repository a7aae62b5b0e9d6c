"""Engine.IO session ids that name the worker owning the session.

The supervisor routes every request that carries a `sid` to the worker whose id is the sid's
prefix, so it never keeps a session table: `"<worker id>.<random>"`, or
`"<node>-<worker id>.<random>"` when several machines sit behind one load balancer, which
then routes on the node name (see deploy/nginx). The random part keeps the
sid unguessable (120 bits, like engine.io's base64id); `.` is not in the base64url alphabet, so
the split is unambiguous. Worker ids are unique for the supervisor's lifetime (a restarted
worker gets a new id), so a sid of a dead worker is recognised and refused at once.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

SEPARATOR = "."
_MAX_ID_DIGITS = 9
NODE_RE = re.compile(r"^[a-z0-9]{1,16}$")


def make_sid_generator(worker_id: int, node: str | None = None) -> Callable[[], str]:
    """A `sid_generator` for the Engine.IO server of worker `worker_id` (on machine `node`)."""
    if worker_id < 0:
        raise ValueError("worker id must be >= 0")
    if node is not None and not NODE_RE.match(node):
        raise ValueError("node id must be 1-16 characters of a-z and 0-9")
    prefix = f"{node}-{worker_id}{SEPARATOR}" if node else f"{worker_id}{SEPARATOR}"
    token = secrets.token_urlsafe

    def generate() -> str:
        return prefix + token(15)

    return generate


def worker_of(sid: str) -> int | None:
    """The worker id encoded in `sid`, or None when the sid was not made by a worker."""
    head, sep, rest = sid.partition(SEPARATOR)
    node, dash, head = head.rpartition("-")  # the node name is the load balancer's business
    if dash and not NODE_RE.match(node):
        return None
    if not sep or not rest or not head.isdigit() or len(head) > _MAX_ID_DIGITS:
        return None
    if not head.isascii():
        return None
    return int(head)
