"""The shared state of a two-tier store (see :mod:`deja.stores.tiered`).

Keeping the L1 coherent needs more than evicting on each invalidation: an invalidation can
arrive while this process has an L2 call in flight for the same key (it read the old value,
or wrote its own, just before another process deleted or overwrote the entry). Evicting
then finds nothing in the L1, and the promotion or write-through that follows would keep a
removed entry for ``l1_ttl``. So every key has a *stamp*: :meth:`TierState.stamp` is taken
before the L2 call, everything that invalidates a key (another process's message, this
process's own delete, overwrite or clear, a bus outage or recovery) advances it, and the L1
is only written if the stamp has not moved, checked and written under the lock that the
invalidations take too.

A child forked from a process that used the store inherits its L1 and flags, but not the
bus's listener thread: there the store counts as not subscribed, bypasses its L1 as in an
outage, and subscribes again on first use, which empties the L1.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from deja._forks import renew_in_child
from deja.errors import UnsupportedOperation
from deja.stores.base import Store, TagIndex
from deja.stores.bus import Invalidation, InvalidationBus, LocalInvalidationBus
from deja.stores.memory import MemoryStore

__all__ = ["TierState"]

logger = logging.getLogger("deja.stores.tiered")

# Per-key counters are kept in a fixed table indexed by the key's hash, so memory stays
# bounded whatever the number of keys. Two keys sharing a slot only cost a skipped L1 fill
# (an invalidation of one also blocks the other's in-flight promotion), never a stale entry.
_STAMP_SLOTS = 4096  # a power of two
_STAMP_MASK = _STAMP_SLOTS - 1


def _slot(key: str) -> int:
    return hash(key) & _STAMP_MASK


@dataclass(slots=True, eq=False, weakref_slot=True)  # (held weakly by the fork hook)
class TierState:
    """L1, L2, the bus and the L1's health, shared by the sync and async operations."""

    l1: MemoryStore
    l2: Store
    bus: InvalidationBus
    origin: str
    l1_ttl: float
    subscribed: bool = False
    # the L1 is in use: only once subscribed, and while the bus delivers
    l1_enabled: bool = False
    # an outage was reported (the bus's first connection, before any, is none)
    outage: bool = False
    # close() has begun: the bus stopping now is no outage
    closing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Guards the stamps and every L1 write or eviction that must be ordered with them.
    guard: threading.Lock = field(default_factory=threading.Lock)
    # Advanced for everything that is not one key: a prefix clear, bus health changes.
    epoch: int = 0
    # Advanced for each invalidated key, in the key's slot.
    stamps: list[int] = field(default_factory=lambda: [0] * _STAMP_SLOTS)

    def __post_init__(self) -> None:
        renew_in_child(self, TierState._forked)

    def _forked(self) -> None:
        """In a forked child: the bus's listener thread stayed in the parent, so nothing
        evicts from the inherited L1 what other processes invalidate (and it may already
        be stale). It is bypassed until the bus has subscribed in this process; the L1 is
        emptied by :meth:`subscribe`, on first use, rather than here, where its lock may be
        held by a parent's thread that is not in the child.

        A :class:`LocalInvalidationBus` lives within one process: the child's copy keeps
        this store's subscription, and its L1 the same use as in the parent."""
        self.lock = threading.Lock()  # a parent's thread may have held these
        self.guard = threading.Lock()
        if isinstance(self.bus, LocalInvalidationBus):
            return
        self.subscribed = False
        self.l1_enabled = False
        self.outage = False  # no outage in this process yet

    def l1_usable(self) -> bool:
        """Whether the L1 may be read and written now (the bus delivers invalidations)."""
        self.ensure_subscribed()
        return self.l1_enabled

    def ensure_subscribed(self) -> None:
        """:meth:`subscribe` unless done (a flag read, no lock, once subscribed)."""
        if not self.subscribed:
            self.subscribe()

    def subscribe(self) -> None:
        """Start receiving the other processes' invalidations (once, on first use; in a
        forked child, again on first use there)."""
        with self.lock:
            if self.subscribed:
                return
            self.subscribed = True
        self.bus.subscribe(self.on_event, self.on_health)
        # Only now that the handlers are in place (a stamp taken before proves nothing). A
        # health report racing this waits for the guard; the bus's flag is already set then.
        with self.guard:
            self.epoch += 1
            # No invalidation was heard for what the L1 holds before now: nothing in a new
            # process, a forked child's copy of its parent's entries
            self.l1.clear("")
            self.l1_enabled = self.bus.healthy and not self.closing

    def stamp(self, key: str) -> int:
        """The token to take before an L2 call on ``key`` and pass to :meth:`promote` or
        :meth:`wrote` (both counters only grow, so the sum is unchanged only if neither
        moved). Reads no lock: a stale read only makes the later check fail."""
        return self.epoch + self.stamps[hash(key) & _STAMP_MASK]

    def on_event(self, event: Invalidation) -> None:
        """Evict what another process invalidated."""
        if event.origin == self.origin:
            return
        with self.guard:
            stamps = self.stamps
            for key in event.keys:
                stamps[_slot(key)] += 1
                self.l1.delete(key)
            if event.prefix is not None:
                self.epoch += 1
                self.l1.clear(event.prefix)

    def on_health(self, healthy: bool) -> None:
        """While invalidations cannot arrive, the L1 could go stale: empty and bypass it."""
        with self.guard:  # any L2 call in flight across an outage may have missed one
            self.epoch += 1
            if not healthy:
                self.l1.clear("")
                if self.closing:
                    logger.debug("invalidation bus stopped: the store is closing")
                elif self.l1_enabled:
                    logger.warning(
                        "invalidation bus down: the L1 cache is bypassed until it is back"
                    )
                    self.outage = True
            elif not self.l1_enabled:
                self.l1.clear("")  # anything written before the outage may have been invalidated
                if self.outage:
                    logger.warning("invalidation bus back: the L1 cache is in use again")
                    self.outage = False
                else:
                    logger.debug("invalidation bus connected: the L1 cache is in use")
            self.l1_enabled = healthy and not self.closing

    def begin_close(self) -> None:
        """Before the bus is stopped on purpose: that is no outage, and from now on no
        invalidation arrives, so the L1 is emptied and no longer used."""
        with self.guard:
            self.closing = True
            self.l1_enabled = False
            self.epoch += 1
            self.l1.clear("")

    def l1_ttl_for(self, ttl: float | None) -> float:
        """An L1 copy never outlives the L2 entry, nor the L1's own bound."""
        return self.l1_ttl if ttl is None else min(ttl, self.l1_ttl)

    def wrote(self, key: str, value: bytes | None, ttl: float | None, stamp: int) -> None:
        """After this process wrote ``key`` to the L2 (``value``) or deleted it (None).

        Write-through keeps the value in the L1, unless ``key`` was invalidated since
        ``stamp`` (taken before the L2 write): the two writes' order in the L2 is then
        unknown, so the L1 copy is dropped. Either way the stamp moves on, so that this
        process's own reads and writes of ``key`` still in flight do not fill the L1 with
        what they saw before this write (the store ignores its own bus messages).
        """
        with self.guard:
            slot = _slot(key)
            unchanged = self.epoch + self.stamps[slot] == stamp
            self.stamps[slot] += 1
            if value is not None and unchanged and self.l1_enabled:
                self.l1.set(key, value, self.l1_ttl_for(ttl))
            else:
                self.l1.delete(key)

    def dropped(self, key: str) -> None:
        """After this process deleted ``key`` in the L2 (see :meth:`wrote`)."""
        with self.guard:
            self.stamps[_slot(key)] += 1
            self.l1.delete(key)

    def cleared(self, prefix: str) -> None:
        """After this process cleared ``prefix`` in the L2 (see :meth:`wrote`)."""
        with self.guard:
            self.epoch += 1
            self.l1.clear(prefix)

    def promote(self, key: str, value: bytes, stamp: int) -> None:
        """Read-through: keep an L2 value in the L1 for at most ``l1_ttl``, unless ``key``
        was invalidated since ``stamp`` (taken before the L2 read).

        The L2's remaining TTL is not known here, so the L1 copy may outlive the L2 entry
        by up to ``l1_ttl``; the cache façade checks each entry's own expiry on every read,
        so an expired answer is never served. A deletion that reaches the L2 after this
        read is delivered by the bus after it too: before this check (the stamp has moved,
        nothing is kept) or after it (the eviction removes the copy).
        """
        with self.guard:
            if self.l1_enabled and self.epoch + self.stamps[_slot(key)] == stamp:
                self.l1.set(key, value, self.l1_ttl)

    def tags(self) -> TagIndex:
        """The L2's tag index (tags live in the shared tier)."""
        l2 = self.l2
        if not isinstance(l2, TagIndex):
            raise UnsupportedOperation(f"the L2 store {l2.name!r} has no tag index")
        return l2
