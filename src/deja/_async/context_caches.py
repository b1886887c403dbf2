"""Provider context caches made once per prompt prefix and found again by its digest.

Gemini bills a long prompt prefix at the cached-input price only when it is sent as a
``cachedContents`` resource made beforehand, and bills that resource's storage by the hour.
:class:`AsyncContextCaches` keeps, for each prefix digest, the resource's name and expiry in
a store (the response cache's own store when there is one, so every process and proxy
worker sharing it reuses one resource), makes a resource at most once per digest at a time
(single-flight here, and across processes through the store's lock when it has one), and
forgets a resource that the provider says is gone so that the next call makes a new one.

The provider-specific work — the create call, its body, the answer — is the caller's: it
passes a coroutine that makes the resource and returns a :class:`ContextCache`.

Store errors fail open: a lookup that fails makes a new resource (it costs storage, never a
wrong answer) and a record that cannot be written is only logged.

The source of truth is src/deja/_async/context_caches.py; the sync twin in src/deja/_sync/
is generated from it by scripts/unasync.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from deja._async.singleflight import AsyncSingleFlight
from deja._lock_keeper import AsyncLockKeeper
from deja.providers.context_cache import ContextCache
from deja.stores.base import Store, locking_of

__all__ = ["AsyncContextCaches", "ContextCache"]

logger = logging.getLogger(__name__)

_KNOWN_NAMES = 4096  # resource name -> digest, for the records this process has seen


class AsyncContextCaches:
    """Context-cache records by prefix digest, with single-flight creation.

    Keyword-only options: ``store`` (default: a private in-memory store), ``key_prefix``
    (records live under ``<key_prefix>ctx:v1:<digest>``), ``margin`` (seconds: a resource
    that expires sooner than this is not reused, so a request never races its expiry;
    default 60), ``lock_ttl`` / ``lock_wait`` for the cross-process lock of a shared store,
    and ``clock`` (wall clock, for expiry).
    """

    def __init__(
        self,
        *,
        store: Store | None = None,
        key_prefix: str = "deja:",
        margin: float = 60.0,
        lock_ttl: float = 30.0,
        lock_wait: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if margin < 0 or lock_ttl <= 0 or lock_wait < 0:
            raise ValueError("margin and lock_wait must be >= 0, lock_ttl > 0")
        if store is None:
            from deja.stores.memory import MemoryStore

            store = MemoryStore(clock=clock)
        self.store = store
        self.key_prefix = key_prefix
        self.margin = margin
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait
        self._clock = clock
        self._flight: AsyncSingleFlight[tuple[ContextCache, bool]] = AsyncSingleFlight()
        self._locking = locking_of(store)
        self._digests: OrderedDict[str, str] = OrderedDict()

    def key(self, digest: str) -> str:
        """The store key of the record for ``digest``."""
        return f"{self.key_prefix}ctx:v1:{digest}"

    async def aget(self, digest: str) -> ContextCache | None:
        """The live record for ``digest`` (``None``: none, expiring, or the store failed)."""
        try:
            raw = await self.store.aget(self.key(digest))
        except Exception as exc:  # fail open: a new resource costs storage, not correctness
            logger.warning("context cache: store lookup failed (%s); making a new one", exc)
            return None
        entry = ContextCache.from_bytes(raw) if raw is not None else None
        if entry is None or entry.expire_time - self._clock() <= self.margin:
            return None
        self._known(entry.name, digest)
        return entry

    async def aget_or_create(
        self, digest: str, create: Callable[[], Awaitable[ContextCache]]
    ) -> tuple[ContextCache, bool]:
        """The record for ``digest``, made with ``create`` when there is none.

        Returns ``(entry, created)``; ``created`` is true only for the one caller whose
        ``create`` ran. Concurrent callers for one digest share one ``create`` call (and,
        with a store offering a lock, so do other processes).
        """
        found = await self.aget(digest)
        if found is not None:
            return found, False

        async def lead() -> tuple[ContextCache, bool]:
            return await self._create_once(digest, create)

        (entry, created), shared = await self._flight.run(digest, lead)
        return entry, created and not shared

    async def arecord(self, digest: str, entry: ContextCache) -> None:
        """Remember ``entry`` as the cache for ``digest`` (one made outside
        :meth:`aget_or_create`, e.g. explicitly); store errors are logged."""
        ttl = entry.expire_time - self._clock()
        if ttl <= 0:
            return
        self._known(entry.name, digest)
        try:
            await self.store.aset(self.key(digest), entry.to_bytes(), ttl)
        except Exception as exc:
            logger.warning("context cache: could not record %s (%s)", entry.name, exc)

    async def aforget(self, digest: str, name: str | None = None) -> None:
        """Drop the record for ``digest`` (when ``name`` is given: only if it still names
        that resource, so a record a peer has just remade is kept)."""
        key = self.key(digest)
        try:
            if name is not None:
                raw = await self.store.aget(key)
                entry = ContextCache.from_bytes(raw) if raw is not None else None
                if entry is not None and entry.name != name:
                    return
            await self.store.adelete(key)
        except Exception as exc:
            logger.warning("context cache: could not drop the record of %s (%s)", digest, exc)

    async def aforget_name(self, name: str) -> bool:
        """Drop the record naming resource ``name`` (deleted at the provider), if this
        process has seen it; returns whether it had. A record only another process has
        seen stays until the next call finds the resource gone and makes a new one."""
        digest = self._digests.pop(name, None)
        if digest is None:
            return False
        await self.aforget(digest, name)
        return True

    def _known(self, name: str, digest: str) -> None:
        self._digests[name] = digest
        self._digests.move_to_end(name)
        if len(self._digests) > _KNOWN_NAMES:
            self._digests.popitem(last=False)

    async def _create_once(
        self, digest: str, create: Callable[[], Awaitable[ContextCache]]
    ) -> tuple[ContextCache, bool]:
        token = None
        locking = self._locking
        name = self.key(digest) + ":lock"
        if locking is not None:
            deadline = time.monotonic() + self.lock_wait
            pause = 0.02
            while True:
                try:
                    token = await locking.alock(name, ttl=self.lock_ttl)
                except Exception as exc:  # fail open: make it here
                    logger.warning("context cache: lock failed (%s)", exc)
                    break
                # the holder may have recorded it just before releasing the lock
                found = await self.aget(digest)
                if found is not None:
                    await self._unlock(name, token)
                    return found, False
                if token is not None or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, 0.25)
        try:
            async with AsyncLockKeeper(locking, name, token, self.lock_ttl):
                entry = await create()
            await self.arecord(digest, entry)
            return entry, True
        finally:
            await self._unlock(name, token)

    async def _unlock(self, name: str, token: str | None) -> None:
        if token is None or self._locking is None:
            return
        try:
            await self._locking.aunlock(name, token)
        except Exception as exc:  # the lock expires by itself
            logger.debug("context cache: unlock failed (%s)", exc)
