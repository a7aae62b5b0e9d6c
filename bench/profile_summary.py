#!/usr/bin/env python3
"""Summarise py-spy raw (collapsed) stacks: top functions by self and by inclusive time.

    .venv/bin/python bench/profile_summary.py /tmp/prof/siopg-throughput-*.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"(.*) \((.*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    """'func (siopg/engine/session.py:12)' -> 'siopg/engine/session.py:func'."""
    m = _FRAME.match(frame)
    return f"{m.group(2)}:{m.group(1)}" if m else frame


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for f in args.files:
        for line in Path(f).read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not stack or not n.isdigit():
                continue
            count = int(n)
            frames = [short(x) for x in stack.split(";")]
            total += count
            self_t[frames[-1]] += count
            for fr in set(frames):
                incl[fr] += count
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} samples (busy time only)\n\nself %  function")
    for fr, n in self_t.most_common(args.top):
        print(f"{100 * n / total:6.1f}  {fr}")
    print("\ninclusive %  function")
    for fr, n in incl.most_common(args.top):
        print(f"{100 * n / total:6.1f}  {fr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
