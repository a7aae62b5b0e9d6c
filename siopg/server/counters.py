"""The server's counters: plain ints, bumped on the hot path (one add per packet, or per
broadcast with the recipient count: never a call per recipient).

They live in the server layer because the server bumps them; siopg.metrics (Prometheus) and
siopg.dashboard, above it, only read them. `siopg.metrics.Metrics` is this same class.
"""

from __future__ import annotations

#: distinct `namespace` label values by default (clients create dynamic namespaces at will)
DEFAULT_MAX_NAMESPACE_LABELS = 100


class Metrics:
    """Counters as plain ints; cheap to increment anywhere.

    `max_namespace_labels` bounds the distinct `namespace` label values (see
    `siopg.metrics.fold_namespaces`); `last_scrape` is the metrics endpoint's cached body.
    """

    #: slots that are settings or caches, not counters
    NOT_COUNTERS = ("max_namespace_labels", "last_scrape")

    __slots__ = (
        "max_namespace_labels",
        "last_scrape",
        "packets_in",
        "packets_out",
        "broadcasts",
        "recoveries_attempted",
        "recoveries_succeeded",
        "sessions_persisted",
        "engine_connections_total",
        "invalid_names",
        "dynamic_namespaces_refused",
        "connection_namespaces_refused",
    )

    def __init__(self) -> None:
        self.max_namespace_labels = DEFAULT_MAX_NAMESPACE_LABELS
        self.last_scrape: tuple[float, bytes] | None = None
        self.packets_in = 0
        self.packets_out = 0
        self.broadcasts = 0
        self.recoveries_attempted = 0
        self.recoveries_succeeded = 0
        self.sessions_persisted = 0
        self.engine_connections_total = 0
        self.invalid_names = 0  # CONNECTs to an invalid namespace, EVENTs with an invalid name
        self.dynamic_namespaces_refused = 0  # CONNECTs refused by max_dynamic_namespaces
        self.connection_namespaces_refused = 0  # CONNECTs refused by max_namespaces_per_connection
