"""The server's counters: plain ints, bumped on the hot path (one add per packet, or per
broadcast with the recipient count: never a call per recipient).

They live in the server layer because the server bumps them; siopg.metrics (Prometheus) and
siopg.dashboard, above it, only read them. `siopg.metrics.Metrics` is this same class.
"""

from __future__ import annotations

from siopg._histogram import LATENCY_BUCKETS, Histogram
from siopg.adapter.errors import ERROR, RECOVERY_CAUSES

#: distinct `namespace` label values by default (clients create dynamic namespaces at will)
DEFAULT_MAX_NAMESPACE_LABELS = 100
#: counters named `recovery_failed_<cause>` count failed recoveries by cause
RECOVERY_FAILED_PREFIX = "recovery_failed_"
#: socket.io's disconnect reasons (the `reason` label of siopg_disconnections); any other is "other"
DISCONNECT_REASONS = (
    "transport close", "transport error", "ping timeout", "parse error", "forced close",
    "forced server close", "server shutting down", "server namespace disconnect",
    "client namespace disconnect", "other",
)


class Metrics:
    """Counters as plain ints; cheap to increment anywhere.

    `max_namespace_labels` bounds the distinct `namespace` label values (see
    `siopg.metrics.fold_namespaces`); `last_scrape` is the metrics endpoint's cached body;
    `disconnections` counts sockets that left by reason (a bounded set: DISCONNECT_REASONS);
    `loop_lag` is the event loop's lateness (siopg.server.loop_lag).
    """

    #: slots that are settings, caches or not plain counters
    NOT_COUNTERS = ("max_namespace_labels", "last_scrape", "disconnections", "loop_lag")

    __slots__ = (
        "max_namespace_labels",
        "last_scrape",
        "disconnections",
        "loop_lag",
        "packets_in",
        "packets_out",
        "broadcasts",
        "recoveries_attempted",
        "recoveries_succeeded",
        "recovery_failed_unknown_session",
        "recovery_failed_expired",
        "recovery_failed_offset_pruned",
        "recovery_failed_offset_invalid",
        "recovery_failed_limit",
        "recovery_failed_unavailable",
        "recovery_failed_error",
        "packets_replayed",
        "sessions_persisted",
        "engine_connections_total",
        "acks_answered",
        "acks_timed_out",
        "invalid_names",
        "dynamic_namespaces_refused",
        "connection_namespaces_refused",
    )

    def __init__(self) -> None:
        self.max_namespace_labels = DEFAULT_MAX_NAMESPACE_LABELS
        self.last_scrape: tuple[float, bytes] | None = None
        self.disconnections = dict.fromkeys(DISCONNECT_REASONS, 0)
        self.loop_lag = Histogram(LATENCY_BUCKETS)
        self.packets_in = 0
        self.packets_out = 0
        self.broadcasts = 0
        self.recoveries_attempted = 0
        self.recoveries_succeeded = 0
        self.recovery_failed_unknown_session = 0  # one per cause in RECOVERY_CAUSES
        self.recovery_failed_expired = 0
        self.recovery_failed_offset_pruned = 0
        self.recovery_failed_offset_invalid = 0
        self.recovery_failed_limit = 0
        self.recovery_failed_unavailable = 0
        self.recovery_failed_error = 0
        self.packets_replayed = 0  # missed packets sent to recovered sockets
        self.sessions_persisted = 0
        self.engine_connections_total = 0
        self.acks_answered = 0  # acknowledgements clients sent for the server's emits
        self.acks_timed_out = 0  # acknowledgements waited for in vain (per client)
        self.invalid_names = 0  # CONNECTs to an invalid namespace, EVENTs with an invalid name
        self.dynamic_namespaces_refused = 0  # CONNECTs refused by max_dynamic_namespaces
        self.connection_namespaces_refused = 0  # CONNECTs refused by max_namespaces_per_connection

    def recovery_failed(self, cause: str) -> str:
        """Count one failed recovery; returns the cause counted (unknown causes count as "error")."""
        if cause not in RECOVERY_CAUSES:
            cause = ERROR
        name = RECOVERY_FAILED_PREFIX + cause
        setattr(self, name, getattr(self, name) + 1)
        return cause

    def disconnected(self, reason: str) -> None:
        """Count one socket leaving its namespace for `reason` (socket.io's reason string)."""
        counts = self.disconnections
        if reason in counts:
            counts[reason] += 1
        else:
            counts["other"] += 1
