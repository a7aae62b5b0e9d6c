"""Adapters: how a namespace finds recipients, in one process (memory) or a cluster (postgres)."""

from siopg.adapter.base import Adapter, BroadcastFlags, BroadcastOptions, RestoredSession, Session
from siopg.adapter.memory import InMemoryAdapter

__all__ = ["Adapter", "BroadcastFlags", "BroadcastOptions", "InMemoryAdapter", "RestoredSession", "Session"]
