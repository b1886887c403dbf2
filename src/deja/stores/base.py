"""The storage interface: stores move bytes by key and know nothing of LLMs.

A store offers every operation twice, as a plain method for sync callers and as an
``a``-prefixed coroutine for async callers (``get``/``aget``, ``close``/``aclose``), so one
store object serves both :class:`deja.Cache` and :class:`deja.AsyncCache`. The cache façade
applies keys, codec, TTL, admission, metrics and fail-open once, above this interface.

Rules every store keeps (checked by ``tests/stores/test_contract.py``):

* ``set``/``set_many`` always apply ``ttl`` (seconds, ``None`` = no expiry); an expired
  value is never returned, whatever the back-end's own expiry granularity.
* ``get_many`` returns one item per key, in order, ``None`` for a missing key.
* ``delete`` returns whether the key existed; ``clear(prefix)`` deletes exactly the keys that
  start with ``prefix`` and returns how many it deleted.
* Expiry uses wall-clock time (``clock``, default ``time.time``) because entries outlive the
  process that wrote them.

Optional abilities are small protocols, never ``hasattr`` probes: :class:`TagIndex` (tags
for bulk invalidation) and :class:`StoreStats` (entry count and evictions for metrics).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "MAX_TTL",
    "LockExtending",
    "Locking",
    "locking_of",
    "SharedValues",
    "Store",
    "StoreStats",
    "StoreUsage",
    "SyncStore",
    "SyncTagIndex",
    "TagIndex",
    "validate_ttl",
]


@runtime_checkable
class Store(Protocol):
    """A bytes key-value store with TTL, usable from sync and async code."""

    name: str
    """Short label for metrics and logs (``memory``, ``disk``, ``redis``...)."""

    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes, ttl: float | None) -> None: ...
    def delete(self, key: str) -> bool: ...
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...
    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None: ...
    def clear(self, prefix: str) -> int: ...
    def close(self) -> None: ...

    async def aget(self, key: str) -> bytes | None: ...
    async def aset(self, key: str, value: bytes, ttl: float | None) -> None: ...
    async def adelete(self, key: str) -> bool: ...
    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]: ...
    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None: ...
    async def aclear(self, prefix: str) -> int: ...
    async def aclose(self) -> None: ...


@runtime_checkable
class TagIndex(Protocol):
    """Optional: remember which keys carry a tag, for bulk invalidation.

    ``tag`` adds keys to a tag (the tag's record lives at least ``ttl`` seconds, so it
    outlives the entries it names); ``keys_for`` lists them (possibly including keys that
    have expired since); ``drop`` forgets the tag and returns the keys it named.
    """

    def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None: ...
    def keys_for(self, tag: str) -> list[str]: ...
    def drop(self, tag: str) -> list[str]: ...

    async def atag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None: ...
    async def akeys_for(self, tag: str) -> list[str]: ...
    async def adrop(self, tag: str) -> list[str]: ...


@runtime_checkable
class Locking(Protocol):
    """Optional: a lock shared by every process using the store (cross-process single-flight).

    ``lock`` tries once to take ``name`` for ``ttl`` seconds and returns a token, or
    ``None`` when another holder has it; the lock expires by itself, so a holder that dies
    frees it after ``ttl``. ``unlock`` releases it only if ``token`` still holds it.
    A store may also offer :class:`LockExtending`.
    """

    def lock(self, name: str, *, ttl: float) -> str | None: ...
    def unlock(self, name: str, token: str) -> None: ...
    async def alock(self, name: str, *, ttl: float) -> str | None: ...
    async def aunlock(self, name: str, token: str) -> None: ...


@runtime_checkable
class LockExtending(Protocol):
    """Optional, beside :class:`Locking`: ``extend`` makes a held lock expire ``ttl``
    seconds from now, if ``token`` still holds it, and says whether it did. A holder
    calling for longer than ``ttl`` keeps its lock so; without it, another process may
    take the lock after ``ttl`` and call too."""

    def extend(self, name: str, token: str, *, ttl: float) -> bool: ...
    async def aextend(self, name: str, token: str, *, ttl: float) -> bool: ...


def locking_of(store: object) -> Locking | None:
    """The cross-process lock ``store`` offers: its own, or a two-tier store's shared tier's."""
    if isinstance(store, Locking):
        return store
    shared = getattr(store, "l2", None)  # TieredStore: the lock lives in L2 (Redis)
    return shared if isinstance(shared, Locking) else None


@runtime_checkable
class SharedValues(Protocol):
    """Optional: ``get`` returns the very ``bytes`` object that ``set`` stored.

    True of in-process stores. A caller may then keep what it derived from a value (the
    cache façade keeps decoded entries) and reuse it while ``get`` returns the same object:
    an overwrite or a delete gives a different object or none, so reuse is never stale.
    """

    def shares_values(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class StoreUsage:
    """What a store holds now, for metrics (read at scrape time, never on the hot path)."""

    entries: int
    bytes: int | None
    evictions: int | None
    """Entries evicted to make room so far (``None``: the store cannot tell)."""


@runtime_checkable
class StoreStats(Protocol):
    """Optional: report entry count, size and evictions."""

    def usage(self) -> StoreUsage: ...


MAX_TTL = 100 * 365.25 * 86400
"""The longest TTL, in seconds (100 years). Every store takes it: past about 9.2e15 s Redis
refuses the write (its millisecond expiry overflows), where memory and disk would not; a
TTL that long only means "forever", which ``None`` says."""


def validate_ttl(ttl: float | None) -> float | None:
    """Return ``ttl`` if it is ``None`` or a positive finite number of seconds up to
    :data:`MAX_TTL`, else raise."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds or None, not {type(ttl).__name__}")
    if not ttl > 0 or ttl == float("inf"):
        raise ValueError(f"ttl must be a positive finite number of seconds, not {ttl!r}")
    if ttl > MAX_TTL:
        raise ValueError(
            f"ttl must be at most {MAX_TTL:.0f} seconds (100 years), not {ttl!r};"
            " give no ttl (None) for entries that never expire"
        )
    return float(ttl)


class SyncStore(ABC):
    """Base for stores whose back-end library is synchronous (memory, disk).

    Subclasses implement the plain methods; the ``a``-methods are derived here. When
    ``offload`` is true (the back-end does file or network I/O) each coroutine runs the sync
    method in a worker thread so the event loop is never blocked; when false (pure memory)
    it is called directly, which costs nothing.
    """

    name: str = "store"
    offload: bool = False

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """See the protocol."""

    @abstractmethod
    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """See the protocol."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """See the protocol."""

    @abstractmethod
    def clear(self, prefix: str) -> int:
        """See the protocol."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(k) for k in keys]

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        for k, v in items.items():
            self.set(k, v, ttl)

    def close(self) -> None:
        return None

    async def aget(self, key: str) -> bytes | None:
        if self.offload:
            return await asyncio.to_thread(self.get, key)
        return self.get(key)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        if self.offload:
            await asyncio.to_thread(self.set, key, value, ttl)
        else:
            self.set(key, value, ttl)

    async def adelete(self, key: str) -> bool:
        if self.offload:
            return await asyncio.to_thread(self.delete, key)
        return self.delete(key)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if self.offload:
            return await asyncio.to_thread(self.get_many, keys)
        return self.get_many(keys)

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        if self.offload:
            await asyncio.to_thread(self.set_many, items, ttl)
        else:
            self.set_many(items, ttl)

    async def aclear(self, prefix: str) -> int:
        if self.offload:
            return await asyncio.to_thread(self.clear, prefix)
        return self.clear(prefix)

    async def aclose(self) -> None:
        if self.offload:
            await asyncio.to_thread(self.close)
        else:
            self.close()


class SyncTagIndex(ABC):
    """Mixin deriving the async :class:`TagIndex` methods from the sync ones (see SyncStore)."""

    offload: bool = False

    @abstractmethod
    def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        """See the protocol."""

    @abstractmethod
    def keys_for(self, tag: str) -> list[str]:
        """See the protocol."""

    @abstractmethod
    def drop(self, tag: str) -> list[str]:
        """See the protocol."""

    async def atag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        if self.offload:
            await asyncio.to_thread(self.tag, tag, keys, ttl)
        else:
            self.tag(tag, keys, ttl)

    async def akeys_for(self, tag: str) -> list[str]:
        if self.offload:
            return await asyncio.to_thread(self.keys_for, tag)
        return self.keys_for(tag)

    async def adrop(self, tag: str) -> list[str]:
        if self.offload:
            return await asyncio.to_thread(self.drop, tag)
        return self.drop(tag)
