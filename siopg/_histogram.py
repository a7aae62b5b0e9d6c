"""Fixed-bucket histograms cheap enough for hot paths (a bottom module: no siopg imports).

`observe(value)` is one C-level bisect and three adds; nothing is allocated. The buckets are
read only when Prometheus scrapes (siopg.metrics turns them into histogram families), and
histograms of several processes merge by adding their counts bucket by bucket.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

#: seconds: commit-to-delivery latency and event-loop lag (1 ms .. 10 s)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: rows per publish batch (the publisher sends at most 2000 by default)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class Histogram:
    """Counts of observations per bucket (`value <= bound`, Prometheus' `le`), plus +Inf."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds: tuple[float, ...] = tuple(sorted(bounds))
        if not self.bounds:
            raise ValueError("a histogram needs at least one bucket bound")
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it) per bucket, the last bound being +Inf."""
        out = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def add(self, other: Histogram) -> None:
        """Add `other`'s observations (same bounds) to this one."""
        if other.bounds != self.bounds:
            raise ValueError("histograms with different buckets cannot be added")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        """An estimate of the q-quantile (the upper bound of its bucket); None when empty."""
        if not self.count:
            return None
        rank = q * self.count
        for bound, seen in self.cumulative():
            if seen >= rank:
                return bound
        return float("inf")  # pragma: no cover - the +Inf bucket always reaches the count
