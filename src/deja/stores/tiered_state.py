"""The shared state of a two-tier store (see :mod:`deja.stores.tiered`)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from deja.errors import UnsupportedOperation
from deja.stores.base import Store, TagIndex
from deja.stores.bus import Invalidation, InvalidationBus
from deja.stores.memory import MemoryStore

__all__ = ["TierState"]

logger = logging.getLogger("deja.stores.tiered")


@dataclass(slots=True)
class TierState:
    """L1, L2, the bus and the L1's health, shared by the sync and async operations."""

    l1: MemoryStore
    l2: Store
    bus: InvalidationBus
    origin: str
    l1_ttl: float
    subscribed: bool = False
    l1_enabled: bool = True
    # an outage was reported (the bus's first connection, before any, is none)
    outage: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def l1_usable(self) -> bool:
        """Whether the L1 may be read and written now (the bus delivers invalidations)."""
        if not self.subscribed:
            self.subscribe()
        return self.l1_enabled

    def subscribe(self) -> None:
        """Start receiving the other processes' invalidations (once, on first use)."""
        with self.lock:
            if self.subscribed:
                return
            self.subscribed = True
        self.l1_enabled = self.bus.healthy
        self.bus.subscribe(self.on_event, self.on_health)

    def on_event(self, event: Invalidation) -> None:
        """Evict what another process invalidated."""
        if event.origin == self.origin:
            return
        for key in event.keys:
            self.l1.delete(key)
        if event.prefix is not None:
            self.l1.clear(event.prefix)

    def on_health(self, healthy: bool) -> None:
        """While invalidations cannot arrive, the L1 could go stale: empty and bypass it."""
        if not healthy:
            self.l1.clear("")
            if self.l1_enabled:
                logger.warning("invalidation bus down: the L1 cache is bypassed until it is back")
                self.outage = True
        elif not self.l1_enabled:
            self.l1.clear("")  # anything written before the outage may have been invalidated
            if self.outage:
                logger.warning("invalidation bus back: the L1 cache is in use again")
                self.outage = False
            else:
                logger.debug("invalidation bus connected: the L1 cache is in use")
        self.l1_enabled = healthy

    def l1_ttl_for(self, ttl: float | None) -> float:
        """An L1 copy never outlives the L2 entry, nor the L1's own bound."""
        return self.l1_ttl if ttl is None else min(ttl, self.l1_ttl)

    def remember(self, key: str, value: bytes, ttl: float | None) -> None:
        """Write-through: keep this process's own write in its L1."""
        if self.l1_usable():
            self.l1.set(key, value, self.l1_ttl_for(ttl))

    def promote(self, key: str, value: bytes) -> None:
        """Read-through: keep an L2 value in the L1 for at most ``l1_ttl``.

        The L2's remaining TTL is not known here, so the L1 copy may outlive the L2 entry
        by up to ``l1_ttl``; the cache façade checks each entry's own expiry on every read,
        so an expired answer is never served, and deletions reach every L1 through the bus.
        """
        self.l1.set(key, value, self.l1_ttl)

    def tags(self) -> TagIndex:
        """The L2's tag index (tags live in the shared tier)."""
        l2 = self.l2
        if not isinstance(l2, TagIndex):
            raise UnsupportedOperation(f"the L2 store {l2.name!r} has no tag index")
        return l2
