"""Two tiers: a per-process in-memory L1 in front of a shared L2 (Redis, disk, S3...).

::

    store = TieredStore(l1=MemoryStore(max_entries=5000), l2=RedisStore(url=...),
                        bus=RedisInvalidationBus(url=...))

Reads try the L1, then the L2, and keep what the L2 returned in the L1 (promotion); writes
go to both (write-through). Every delete, overwrite and clear is published on the
invalidation ``bus`` so the other processes drop those entries from their L1s; while the bus
is down the L1 is emptied and bypassed, and so it is in a forked child (the parent's
listener thread is not there) until the child's own subscription is up. An invalidation that
arrives while this process has an L2 read or write of the same key in flight keeps that
value out of its L1 too (see :mod:`deja.stores.tiered_state`), so a delete is never undone
by a late promotion. Without a bus (``LocalInvalidationBus()``, the default) the L1 is only
safe when one process writes the L2, or for entries that may be stale for up to ``l1_ttl``
seconds.

Config type ``tiered`` (LiteLLM's ``dual_cache`` with ``l1:`` / ``l2:`` blocks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from deja._async.tiered_ops import AsyncTieredOps
from deja._sync.tiered_ops import TieredOps
from deja.stores.base import ConnectionOrder, Store, StoreStats, StoreUsage, validate_ttl
from deja.stores.bus import InvalidationBus, LocalInvalidationBus, new_origin
from deja.stores.memory import MemoryStore
from deja.stores.tiered_state import TierState

__all__ = ["TieredStore"]


class TieredStore:
    """An in-memory L1 over any L2 store, kept coherent across processes by a bus.

    ``l1_ttl`` bounds how long an L1 copy lives (and so how stale it could be if an
    invalidation were lost); an L1 copy never outlives the TTL it was written with.
    """

    name = "tiered"

    def __init__(
        self,
        *,
        l2: Store,
        l1: MemoryStore | None = None,
        l1_ttl: float = 300.0,
        bus: InvalidationBus | None = None,
    ) -> None:
        ttl = validate_ttl(l1_ttl)
        assert ttl is not None  # validate_ttl returns its argument when it is a number
        self.state = TierState(
            l1=l1 if l1 is not None else MemoryStore(max_entries=5000),
            l2=l2,
            bus=bus if bus is not None else LocalInvalidationBus(),
            origin=new_origin(),
            l1_ttl=ttl,
        )
        self._ops = TieredOps(self.state)
        self._aops = AsyncTieredOps(self.state)

    @property
    def l1(self) -> MemoryStore:
        """The in-process tier."""
        return self.state.l1

    @property
    def l2(self) -> Store:
        """The shared tier."""
        return self.state.l2

    def get(self, key: str) -> bytes | None:
        """L1, else L2 (and promote)."""
        state = self.state
        if state.l1_enabled and state.subscribed:  # the L1-hit fast path: no extra calls
            value = state.l1.get(key)
            if value is not None:
                return value
        return self._ops.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Both tiers; other processes drop their copy."""
        self._ops.set(key, value, ttl)

    def delete(self, key: str) -> bool:
        """Both tiers, and every other process's L1."""
        return self._ops.delete(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Batch :meth:`get`."""
        return self._ops.get_many(keys)

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Batch :meth:`set`."""
        self._ops.set_many(items, ttl)

    def clear(self, prefix: str) -> int:
        """Both tiers, and every other process's L1; returns the L2's count."""
        return self._ops.clear(prefix)

    def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        """Tags live in the L2."""
        self._ops.tag(tag, keys, ttl)

    def keys_for(self, tag: str) -> list[str]:
        """The L2's keys for ``tag``."""
        return self._ops.keys_for(tag)

    def drop(self, tag: str) -> list[str]:
        """Forget ``tag`` in the L2 (the cache then deletes its keys through this store)."""
        return self._ops.drop(tag)

    def mark_connections(self) -> int | None:
        """The L2's mark (tags live there: see :class:`ConnectionOrder`); ``None`` when it
        keeps none."""
        l2 = self.state.l2
        return l2.mark_connections() if isinstance(l2, ConnectionOrder) else None

    def reconnected_since(self, mark: int) -> bool:
        """The L2's answer (see :class:`ConnectionOrder`)."""
        l2 = self.state.l2
        return not isinstance(l2, ConnectionOrder) or l2.reconnected_since(mark)

    def shares_values(self) -> bool:
        """L1 hits hand back the stored object itself (see :class:`SharedValues`)."""
        return True

    @property
    def usage_interval(self) -> float:
        """How often :meth:`usage` may be read (the L2's, an S3 bucket's 300 s)."""
        return float(getattr(self.state.l2, "usage_interval", 0.0))

    @property
    def usage_source(self) -> str | None:
        """What :meth:`usage` measures: the L2's (shared by every process's L1)."""
        source = getattr(self.state.l2, "usage_source", None)
        return source if isinstance(source, str) else None

    def usage(self) -> StoreUsage:
        """The L2's usage: what every process shares (an L1 holds a few recent entries of
        one process); the L1's when the L2 reports none."""
        l2 = self.state.l2
        if isinstance(l2, StoreStats):
            return l2.usage()
        return self.state.l1.usage()

    def close(self) -> None:
        """Stop the bus and close both tiers."""
        self._ops.close()

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get`: an L1 hit never awaits."""
        state = self.state
        if state.l1_enabled and state.subscribed:
            value = state.l1.get(key)
            if value is not None:
                return value
        return await self._aops.get(key)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        """Async :meth:`set`."""
        await self._aops.set(key, value, ttl)

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`."""
        return await self._aops.delete(key)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`get_many`."""
        return await self._aops.get_many(keys)

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Async :meth:`set_many`."""
        await self._aops.set_many(items, ttl)

    async def aclear(self, prefix: str) -> int:
        """Async :meth:`clear`."""
        return await self._aops.clear(prefix)

    async def atag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        """Async :meth:`tag`."""
        await self._aops.tag(tag, keys, ttl)

    async def akeys_for(self, tag: str) -> list[str]:
        """Async :meth:`keys_for`."""
        return await self._aops.keys_for(tag)

    async def adrop(self, tag: str) -> list[str]:
        """Async :meth:`drop`."""
        return await self._aops.drop(tag)

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self._aops.close()
