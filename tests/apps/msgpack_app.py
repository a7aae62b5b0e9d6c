"""The same app with the socket.io-msgpack-parser compatible parser."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build  # noqa: E402

io = build(parser="msgpack")
