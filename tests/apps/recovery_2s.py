"""Connection state recovery with a 2 s window: long enough to recover, short enough to expire."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import siopg  # noqa: E402
from _common import build  # noqa: E402

io = build(connection_state_recovery=siopg.Recovery(max_disconnection_duration=2.0))
WINDOW = 2.0
