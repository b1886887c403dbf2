"""The operations of a two-tier store (L1 in process, L2 shared), async source of truth.

The source of truth is src/deja/_async/tiered_ops.py; the sync twin in src/deja/_sync/ is
generated from it by scripts/unasync.py. The L1 is an in-memory store, called directly in
both (no I/O); the L2 is called with ``await`` here and plainly in the twin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from deja.stores.bus import Invalidation
from deja.stores.tiered_state import TierState

__all__ = ["AsyncTieredOps"]


class AsyncTieredOps:
    """Read-through with promotion, write-through, and invalidation of other L1s."""

    def __init__(self, state: TierState) -> None:
        self.state = state

    async def get(self, key: str) -> bytes | None:
        s = self.state
        use_l1 = s.l1_usable()
        if use_l1:
            value = s.l1.get(key)
            if value is not None:
                return value
        stamp = s.stamp(key)  # before the L2 read: see TierState.promote
        value = await s.l2.aget(key)
        if value is not None and use_l1:
            s.promote(key, value, stamp)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        s = self.state
        use_l1 = s.l1_usable()
        found: list[bytes | None] = [s.l1.get(k) for k in keys] if use_l1 else [None] * len(keys)
        missing = [i for i, v in enumerate(found) if v is None]
        if missing:
            wanted = [keys[i] for i in missing]
            stamps = [s.stamp(k) for k in wanted]
            values = await s.l2.aget_many(wanted)
            for i, key, stamp, value in zip(missing, wanted, stamps, values, strict=True):
                found[i] = value
                if value is not None and use_l1:
                    s.promote(key, value, stamp)
        return found

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        s = self.state
        s.ensure_subscribed()  # before the stamp is taken
        stamp = s.stamp(key)
        try:
            await s.l2.aset(key, value, ttl)
        except BaseException:
            s.wrote(key, None, ttl, stamp)  # it may still have landed: drop the old L1 copy
            raise
        s.wrote(key, value, ttl, stamp)
        await s.bus.apublish(Invalidation(s.origin, keys=(key,)))

    async def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        s = self.state
        s.ensure_subscribed()  # before the stamps are taken
        stamps = [s.stamp(key) for key in items]
        try:
            await s.l2.aset_many(items, ttl)
        except BaseException:
            for key, stamp in zip(items, stamps, strict=True):
                s.wrote(key, None, ttl, stamp)  # see set
            raise
        for (key, value), stamp in zip(items.items(), stamps, strict=True):
            s.wrote(key, value, ttl, stamp)
        await s.bus.apublish(Invalidation(s.origin, keys=tuple(items)))

    async def delete(self, key: str) -> bool:
        s = self.state
        s.l1.delete(key)
        try:
            return await s.l2.adelete(key)
        finally:  # after the L2 delete, so no read that saw the old value can promote it;
            # also if it failed, as it may still have happened (management calls are rare)
            s.dropped(key)
            await s.bus.apublish(Invalidation(s.origin, keys=(key,)))

    async def clear(self, prefix: str) -> int:
        s = self.state
        s.l1.clear(prefix)
        try:
            return await s.l2.aclear(prefix)
        finally:  # see delete
            s.cleared(prefix)
            await s.bus.apublish(Invalidation(s.origin, prefix=prefix))

    async def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        await self.state.tags().atag(tag, keys, ttl)

    async def keys_for(self, tag: str) -> list[str]:
        return await self.state.tags().akeys_for(tag)

    async def drop(self, tag: str) -> list[str]:
        return await self.state.tags().adrop(tag)

    async def close(self) -> None:
        s = self.state
        s.begin_close()  # the bus stopping now is no outage
        s.bus.close()
        s.l1.close()
        await s.l2.aclose()
