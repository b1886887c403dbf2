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
  start with ``prefix`` and returns how many it deleted (an S3 store: how many it listed and
  deleted, which counts again a key another call deleted meanwhile; see
  :meth:`~deja.stores.s3.S3Store.clear`).
* Expiry uses wall-clock time (``clock``, default ``time.time``) because entries outlive the
  process that wrote them.

Optional abilities are small protocols, never ``hasattr`` probes: :class:`TagIndex` (tags
for bulk invalidation), :class:`StoreStats` (entry count and evictions for metrics) and
:class:`ConnectionOrder` (which connections answered, so writes can tell they may have
reached different lives of a server that restarted).

A store over a blocking library (disk, S3) runs its async callers' calls in worker threads
of its own, never asyncio's default pool: with that pool (``min(32, cpus + 4)`` threads)
30 async lookups on a hung S3 endpoint queued behind each other's timeouts (16 s at the
median, 26 s at worst, for a 4 s timeout) and held up every other ``to_thread`` user
meanwhile. The store's threads also carry a small breaker: a call that reaches its thread
after another found the back-end unreachable or timing out is turned away at once
(:class:`~deja.errors.StoreBusy`, a miss for the cache façade) rather than wait its own
timeout, until a probe gets an answer (see :class:`SyncStore`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from deja.breaker import CircuitBreaker
from deja.errors import StoreBusy, StoreError

__all__ = [
    "MAX_TTL",
    "ConnectionOrder",
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
class ConnectionOrder(Protocol):
    """Optional: whether a caller's commands, from a mark on, may have reached different
    lives of a server that restarted (the store numbers its connections as they open, and
    notes which answered the caller: no round trip).

    A server that restarts empty (no persistence) loses what was written before; a command
    that reaches it afterwards does so on a connection opened since. The cache writes an
    entry's tag records, then its value: it takes a mark (:meth:`mark_connections`) before
    the records, and after the value asks :meth:`reconnected_since`, true only when the
    value was answered on a connection opened after the first record was sent (a
    connection the store opened before, for another caller or for that record, is no sign
    of a restart). The account is kept per context (an asyncio task, a thread): other
    callers' commands do not move it.
    """

    def mark_connections(self) -> int | None:
        """Start the calling context's account of the connections that answer it; the mark
        to give :meth:`reconnected_since`, or ``None`` when the store does not number its
        connections (it then never tells a restart)."""
        ...

    def reconnected_since(self, mark: int) -> bool:
        """Whether the latest command this context sent since ``mark`` was answered on a
        connection opened after its first command since was sent: it may have reached a
        server that restarted in between. True when unknown (another mark was taken
        since, or no command was answered)."""
        ...


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


_T = TypeVar("_T")

# Where an offloading store keeps its worker threads (set on first use, per process).
_WORKERS = "_deja_offload_workers"
# A store's threads turn calls away once one call found the back-end unreachable (it cost
# a timeout or more already: clients retry within a call) until a probe this many seconds
# later gets an answer. With 5 such calls in a row (the cache's breaker), the misses whose
# lookups timed out together each sent their write too, and waited another timeout.
_UNREACHABLE_RESET = 1.0


@dataclass(frozen=True, slots=True)
class _Workers:
    """One store's worker threads for its async callers, and their breaker."""

    pid: int  # a pool's threads do not survive a fork: a child makes its own
    pool: ThreadPoolExecutor
    breaker: CircuitBreaker


class _Offloading:
    """What :class:`SyncStore` and :class:`SyncTagIndex` share: the store's own threads.

    A store sets ``offload = True`` when its sync methods do file or network I/O; its
    ``a``-methods then run them in the store's worker threads, created on first use
    (:meth:`_offload_workers` of them at most: a store over a connection pool sizes them to
    it). A call turned away by the breaker raises :class:`~deja.errors.StoreBusy` without
    running; :meth:`_unreachable` says which failures feed the breaker (none by default,
    so a store that does not say never turns a call away).
    """

    name: str = "store"
    offload: bool = False

    def _offload_workers(self) -> int:
        """How many worker threads the async callers' calls may use at once (asyncio's
        default pool size, but a pool of the store's own)."""
        return min(32, (os.cpu_count() or 1) + 4)

    def _unreachable(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the back-end could not be reached or did not answer in time
        (a failure that cost a timeout, which the next calls would each pay again)."""
        return False

    async def _offloaded(self, call: Callable[..., _T], *args: Any, gated: bool = True) -> _T:
        """``call(*args)`` in one of the store's worker threads (context variables go along,
        as with :func:`asyncio.to_thread`); ``gated=False``: never turned away (a call that
        asks nothing of the back-end, as ``close``)."""
        workers = self._workers()
        if gated:
            run = functools.partial(self._admitted, workers.breaker, call, *args)
        else:
            run = functools.partial(call, *args)
        in_context = functools.partial(contextvars.copy_context().run, run)
        return await asyncio.get_running_loop().run_in_executor(workers.pool, in_context)

    def _admitted(self, breaker: CircuitBreaker, call: Callable[..., _T], *args: Any) -> _T:
        """Run ``call`` now that its thread is free, unless the back-end has just been found
        unreachable: a call queued behind timed-out ones is turned away then."""
        if not breaker.allow():
            raise StoreBusy(
                f"{self.name} store: unreachable or timing out just now; calls are turned"
                f" away until one, every {breaker.reset_after:g} s, gets an answer"
            )
        try:
            result = call(*args)
        except BaseException as exc:
            if self._unreachable(exc):
                breaker.failure()
            elif isinstance(exc, StoreError) and not isinstance(exc, StoreBusy):
                breaker.success()  # the back-end answered, if only with an error
            else:
                breaker.release()  # nothing was asked of the back-end
            raise
        breaker.success()
        return result

    def _workers(self) -> _Workers:
        workers: _Workers | None = self.__dict__.get(_WORKERS)
        if workers is not None and workers.pid == os.getpid():
            return workers
        fresh = _Workers(
            pid=os.getpid(),
            pool=ThreadPoolExecutor(
                max_workers=self._offload_workers(), thread_name_prefix=f"deja-{self.name}"
            ),
            breaker=CircuitBreaker(threshold=1, reset_after=_UNREACHABLE_RESET),
        )
        if workers is None:
            # (atomic: two threads starting at once end up with the same pool)
            found: _Workers = self.__dict__.setdefault(_WORKERS, fresh)
            return found
        self.__dict__[_WORKERS] = fresh  # a forked child: the parent's threads are not here
        return fresh

    def _release_workers(self) -> None:
        """Let the worker threads go (a call still running ends first; the next call makes
        new ones). For :meth:`close`: call it when no other call is in flight."""
        workers: _Workers | None = self.__dict__.pop(_WORKERS, None)
        if workers is not None and workers.pid == os.getpid():
            workers.pool.shutdown(wait=False)


class SyncStore(_Offloading, ABC):
    """Base for stores whose back-end library is synchronous (memory, disk, S3).

    Subclasses implement the plain methods; the ``a``-methods are derived here. When
    ``offload`` is true (the back-end does file or network I/O) each coroutine runs the sync
    method in one of the store's own worker threads so the event loop is never blocked;
    when false (pure memory) it is called directly, which costs nothing.

    The worker threads carry a :class:`~deja.breaker.CircuitBreaker`, fed by the failures
    :meth:`_unreachable` names: once a call found the back-end unreachable or timing out, a
    call that reaches its thread is turned away with :class:`~deja.errors.StoreBusy` (a
    miss, which does not trip the cache façade's breaker) until one call, a second later,
    gets an answer. The façade's own breaker skips new lookups only after 5
    failures; calls already queued for a thread (more async callers than threads), or
    admitted before it opened (the writes of misses whose lookups timed out), would each
    have waited a timeout. Sync callers run on their own threads and are not turned away.
    """

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
            return await self._offloaded(self.get, key)
        return self.get(key)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        if self.offload:
            await self._offloaded(self.set, key, value, ttl)
        else:
            self.set(key, value, ttl)

    async def adelete(self, key: str) -> bool:
        if self.offload:
            return await self._offloaded(self.delete, key)
        return self.delete(key)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if self.offload:
            return await self._offloaded(self.get_many, keys)
        return self.get_many(keys)

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        if self.offload:
            await self._offloaded(self.set_many, items, ttl)
        else:
            self.set_many(items, ttl)

    async def aclear(self, prefix: str) -> int:
        if self.offload:
            return await self._offloaded(self.clear, prefix)
        return self.clear(prefix)

    async def aclose(self) -> None:
        if self.offload:
            await self._offloaded(self.close, gated=False)
            self._release_workers()
        else:
            self.close()


class SyncTagIndex(_Offloading, ABC):
    """Mixin deriving the async :class:`TagIndex` methods from the sync ones (see SyncStore)."""

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
            await self._offloaded(self.tag, tag, keys, ttl)
        else:
            self.tag(tag, keys, ttl)

    async def akeys_for(self, tag: str) -> list[str]:
        if self.offload:
            return await self._offloaded(self.keys_for, tag)
        return self.keys_for(tag)

    async def adrop(self, tag: str) -> list[str]:
        if self.offload:
            return await self._offloaded(self.drop, tag)
        return self.drop(tag)
