"""Default parser, no recovery: `siopg serve tests/apps/basic.py:io`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build  # noqa: E402

io = build()
